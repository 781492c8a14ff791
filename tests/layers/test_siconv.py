"""SiConv2d against the reference fixtures (siconv_*.npz); fft form against the direct form."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from stir_jax.layers.interpolation import MODES
from stir_jax.layers.siconv import SiConv2d, num_scales_for, siconv2d


# Jitted once per static configuration: far faster than eager per-scale dispatch.
jit_siconv2d = jax.jit(siconv2d, static_argnames=("num_scales", "mode", "impl"))


def rel_err(a, b) -> float:
  return float(np.max(np.abs(np.asarray(a) - np.asarray(b))) / np.max(np.abs(np.asarray(b))))


def _fixture_args(f):
  x = jnp.asarray(f["x"].transpose(0, 2, 3, 1))  # NCHW -> NHWC
  w = jnp.asarray(f["weights"].transpose(2, 3, 1, 0))  # OIHW -> HWIO
  b = jnp.asarray(f["bias"])
  ref = f["out"].transpose(0, 2, 3, 4, 1)  # N O S H W -> B S H W C
  return x, w, b, ref


def test_num_scales_for():
  assert num_scales_for(64, 7) == 29
  assert num_scales_for(58, 7) == 26
  assert num_scales_for(32, 7) == 13


@pytest.mark.parametrize("impl", ["direct", "fft"])
@pytest.mark.parametrize("mode", MODES)
def test_matches_reference(mode, impl, load_fixture):
  f = load_fixture(f"siconv_{mode}")
  x, w, b, ref = _fixture_args(f)
  out = jit_siconv2d(x, w, b, num_scales=int(f["num_scales"]), mode=mode, impl=impl)
  assert out.shape == ref.shape == (2, 13, 26, 26, 4)
  assert rel_err(out, ref) <= 1e-5


@pytest.mark.parametrize("impl", ["direct", "fft"])
def test_ring_is_exactly_zero(impl, rng):
  kx, kw = jax.random.split(rng)
  x = jax.random.normal(kx, (1, 17, 17, 2))
  w = jax.random.normal(kw, (5, 5, 2, 3))
  b = jnp.full((3,), 0.5)  # a nonzero bias must not leak into the ring
  out = np.asarray(jit_siconv2d(x, w, b, num_scales=7, mode="bicubic", impl=impl))
  o0 = 13
  for i in range(7):
    inside = np.zeros((o0, o0), bool)
    inside[i:o0 - i, i:o0 - i] = True
    assert np.all(out[:, i][:, ~inside] == 0.0), i
    assert np.all(out[:, i][:, inside] != 0.0), i


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("cin", [1, 3])
def test_fft_gradients_equal_direct(mode, cin, rng):
  kx, kw, kb, kr = jax.random.split(rng, 4)
  x = jax.random.normal(kx, (2, 15, 15, cin))
  w = jax.random.normal(kw, (5, 5, cin, 4)) * 0.2
  b = jax.random.normal(kb, (4,))
  s = num_scales_for(15, 5)
  r = jax.random.normal(kr, (2, s, 11, 11, 4))

  def loss(x, w, b, impl):
    return jnp.sum(siconv2d(x, w, b, num_scales=s, mode=mode, impl=impl) * r)

  grad = jax.jit(jax.grad(loss, argnums=(0, 1, 2)), static_argnums=3)
  direct = grad(x, w, b, "direct")
  fft = grad(x, w, b, "fft")
  for name, gd, gf in zip(("x", "weight", "bias"), direct, fft):
    assert rel_err(gf, gd) <= 1e-5, name


def test_auto_uses_direct_for_non_square(rng):
  x = jax.random.normal(rng, (1, 16, 14, 2))
  w = jax.random.normal(rng, (5, 5, 2, 3))
  b = jnp.zeros(3)
  s = num_scales_for(14, 5)
  out = siconv2d(x, w, b, num_scales=s)
  assert out.shape == (1, s, 12, 10, 3)
  np.testing.assert_array_equal(out, siconv2d(x, w, b, num_scales=s, impl="direct"))
  with pytest.raises(ValueError, match="square"):
    siconv2d(x, w, b, num_scales=s, impl="fft")


def test_wrong_num_scales_message(rng):
  x = jnp.zeros((1, 32, 32, 3))
  w = jnp.zeros((7, 7, 3, 4))
  with pytest.raises(ValueError, match="input of size 32x32 gives 13 scales for kernel 7 but the "
                     "layer was built for 29"):
    siconv2d(x, w, jnp.zeros(4), num_scales=29)
  with pytest.raises(ValueError, match="gives 26 scales for kernel 7 but the layer was built for 29"):
    SiConv2d(features=4, num_scales=29).init(rng, jnp.zeros((1, 58, 58, 3)))


def test_module(rng, load_fixture):
  x = jnp.zeros((2, 32, 32, 3))
  layer = SiConv2d(features=4, kernel_size=7)
  params = layer.init(rng, x)["params"]
  assert params["kernel"].shape == (7, 7, 3, 4) and params["bias"].shape == (4,)
  n_params = sum(p.size for p in jax.tree_util.tree_leaves(params))
  assert n_params == 7 * 7 * 3 * 4 + 4
  bound = 1.0 / np.sqrt(3 * 7 * 7)
  for p in (params["kernel"], params["bias"]):
    assert np.all(np.abs(np.asarray(p)) <= bound)
  # With the reference's parameters the module reproduces the reference output.
  f = load_fixture("siconv_bicubic")
  fx, fw, fb, ref = _fixture_args(f)
  out = layer.apply({"params": {"kernel": fw, "bias": fb}}, fx)
  assert out.shape == (2, 13, 26, 26, 4)
  assert rel_err(out, ref) <= 1e-5
