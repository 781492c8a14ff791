"""SiConv2d against the reference fixtures (siconv_*.npz); fft form against the direct form."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from stir_jax.layers.interpolation import MODES
from stir_jax.layers.siconv import SiConv2d, num_scales_for, siconv2d
from tests.helpers import rel_err


# Jitted once per static configuration: far faster than eager per-scale dispatch.
jit_siconv2d = jax.jit(siconv2d, static_argnames=("num_scales", "interpolation", "impl"))


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
  out = jit_siconv2d(x, w, b, num_scales=int(f["num_scales"]), interpolation=mode, impl=impl)
  assert out.shape == ref.shape == (2, 13, 26, 26, 4)
  assert rel_err(out, ref) <= 1e-5


@pytest.mark.parametrize("impl", ["direct", "fft"])
def test_ring_is_exactly_zero(impl, rng):
  kx, kw = jax.random.split(rng)
  x = jax.random.normal(kx, (1, 17, 17, 2))
  w = jax.random.normal(kw, (5, 5, 2, 3))
  b = jnp.full((3,), 0.5)  # a nonzero bias must not leak into the ring
  out = np.asarray(jit_siconv2d(x, w, b, num_scales=7, interpolation="bicubic", impl=impl))
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
    return jnp.sum(siconv2d(x, w, b, num_scales=s, interpolation=mode, impl=impl) * r)

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


# --- Fused SiConv + scale pool (siconv2d_pool) against scale_pool(siconv2d(...), pool).

def _pool_reference(x, w, b, s, mode, impl="direct", pool="pixel"):
  from stir_jax.layers.scale_pool import scale_pool
  return scale_pool(siconv2d(x, w, b, num_scales=s, interpolation=mode, impl=impl), pool)


@pytest.mark.parametrize("pool,mode,size", [
    ("pixel", "bicubic", 15), ("pixel", "area", 15), ("pixel", "bicubic", 16),
    ("slice", "bicubic", 15), ("slice", "bicubic", 16),
    ("energy", "bicubic", 15), ("energy", "bicubic", 16)])
# cin 3 (the same fused path with more input channels; 10-16 s a case on a slow 2-core machine)
# runs with -m slow
@pytest.mark.parametrize("cin", [1, pytest.param(3, marks=pytest.mark.slow)])
def test_siconv2d_pool_matches_unfused(pool, mode, size, cin, rng):
  from stir_jax.layers.siconv import siconv2d_pool
  kx, kw, kb, kr = jax.random.split(rng, 4)
  x = jax.random.normal(kx, (2, size, size, cin))
  w = jax.random.normal(kw, (5, 5, cin, 4)) * 0.2
  # Biases of both signs, one far below the responses: zero rings win there (pixel, slice) and
  # energy pooling prefers the smallest square (the largest scale) where the bias is negative.
  b = jnp.array([-5.0, 1.0, -0.3, 0.3]) + 0.01 * jax.random.normal(kb, (4,))
  s = num_scales_for(size, 5)
  o0 = size - 4
  r = jax.random.normal(kr, (2, o0, o0, 4))
  fused = jax.jit(lambda x, w, b: siconv2d_pool(x, w, b, num_scales=s, interpolation=mode,
                                                pool=pool))
  p_ref, i_ref = _pool_reference(x, w, b, s, mode, pool=pool)
  p, i = fused(x, w, b)
  assert p.shape == (2, o0, o0, 4) and i.dtype == jnp.int32
  assert i.shape == ((2, o0, o0, 4) if pool == "pixel" else (2, 4))
  assert rel_err(p, p_ref) <= 1e-5
  np.testing.assert_array_equal(i, i_ref)
  if pool != "pixel":
    assert len(np.unique(np.asarray(i))) > 1  # the choice differs between slices

  def loss(f):
    return lambda x, w, b: jnp.sum(f(x, w, b)[0] * r)

  g_ref = jax.grad(loss(lambda x, w, b: _pool_reference(x, w, b, s, mode, pool=pool)),
                   (0, 1, 2))(x, w, b)
  g = jax.jit(jax.grad(loss(fused), (0, 1, 2)))(x, w, b)
  for name, gr, gf in zip(("x", "weight", "bias"), g_ref, g):
    assert rel_err(gf, gr) <= 1e-5, name


def test_siconv2d_pool_zero_ring_and_ties(rng):
  """All-negative responses: the zero ring of scale 1 wins near the border (lowest scale on a tie
  of zeros), and ring wins carry no gradient to weight or bias."""
  from stir_jax.layers.siconv import siconv2d_pool
  x = jnp.abs(jax.random.normal(rng, (1, 13, 13, 2))) + 0.1
  w = -jnp.ones((5, 5, 2, 3)) * 0.1
  b = -jnp.ones((3,))
  s = num_scales_for(13, 5)
  p, i = jax.jit(lambda x, w, b: siconv2d_pool(x, w, b, num_scales=s))(x, w, b)
  p_ref, i_ref = _pool_reference(x, w, b, s, "bicubic")
  np.testing.assert_array_equal(i, i_ref)
  np.testing.assert_allclose(p, p_ref, rtol=1e-6, atol=0)
  i = np.asarray(i)
  assert np.all(i[:, 0, :] == 1) and np.all(i[:, :, 0] == 1)  # outer ring: scale 1's zero ring
  assert np.all(np.asarray(p)[:, 0, :] == 0.0)
  assert np.all(i[:, 1, 1:-1] == 2)  # ring of scale 2 (scale 1 is valid there and negative)
  g = jax.jit(jax.grad(lambda w, b: jnp.sum(siconv2d_pool(x, w, b, num_scales=s)[0]),
                       (0, 1)))(w, b)
  g_ref = jax.jit(jax.grad(lambda w, b: jnp.sum(_pool_reference(x, w, b, s, "bicubic")[0]),
                           (0, 1)))(w, b)
  for gf, gr in zip(g, g_ref):
    np.testing.assert_allclose(gf, gr, rtol=1e-5, atol=1e-6)


def test_siconv2d_slice_pool_zero_ring_wins(rng):
  """All-negative responses: every slice's largest value is a zero of scale 1's ring, so slice
  pooling picks scale 1 (the lowest scale holding that zero) for every (b, c)."""
  from stir_jax.layers.siconv import siconv2d_pool
  x = jnp.abs(jax.random.normal(rng, (2, 13, 13, 2))) + 0.1
  w = -jnp.ones((5, 5, 2, 3)) * 0.1
  b = -jnp.ones((3,))
  s = num_scales_for(13, 5)
  p, i = jax.jit(lambda x, w, b: siconv2d_pool(x, w, b, num_scales=s, pool="slice"))(x, w, b)
  p_ref, i_ref = _pool_reference(x, w, b, s, "bicubic", pool="slice")
  np.testing.assert_array_equal(i, np.ones((2, 3), np.int32))
  np.testing.assert_array_equal(i, i_ref)
  np.testing.assert_allclose(p, p_ref, rtol=1e-6, atol=0)
  assert np.all(np.asarray(p)[:, 0, :] == 0.0) and np.all(np.asarray(p)[:, 1:-1, 1:-1] < 0)


def test_chosen_scale_backward_equals_per_scale(rng):
  """Slice and energy pooling's backward pass (each (b, o) through its chosen scale's kernel
  only) gives the per-scale backward pass's cotangents (every scale's product over all (b, o),
  masked), for any choice of scales, to float rounding."""
  from stir_jax.layers import siconv_fft as sf
  kx, kw, kb, kg, ki = jax.random.split(rng, 5)
  x = jax.random.normal(kx, (3, 16, 16, 2))
  w = 0.2 * jax.random.normal(kw, (5, 5, 2, 4))
  b = 0.2 * jax.random.normal(kb, (4,))
  s = num_scales_for(16, 5)
  g = jax.random.normal(kg, (12, 12, 3, 4))  # the pooled output's cotangent, (H, W, B, O)
  idx = jax.random.randint(ki, (3, 4), 0, s)  # a chosen scale per (b, o)
  assert len(np.unique(np.asarray(idx))) >= 4

  def both(x, w, b, g, idx):
    _, _, a, g2 = sf._forward(x, w, b, s, "bicubic", "slice")
    per_scale = sf._backward_per_scale(
        x, w, a, g2, s, lambda i, region: jnp.where(idx == i, g[region], 0.0))
    return sf._backward_gathered(x, w, g2, g, idx), per_scale

  gathered, per_scale = jax.jit(both)(x, w, b, g, idx)
  for name, ours, ref in zip(("x", "weight", "bias"), gathered, per_scale):
    assert np.abs(np.asarray(ref)).max() > 0, name
    assert rel_err(ours, ref) <= 1e-5, name


def test_energy_scores_equal_sums_of_the_stack(rng):
  """Energy pooling scores every scale without forming it (`_energy_scores`): each score equals
  the sum of that scale's map in the stack (valid square plus bias, zero ring)."""
  from stir_jax.layers import siconv_fft as sf
  kx, kw, kb = jax.random.split(rng, 3)
  x = jax.random.normal(kx, (2, 16, 16, 3))
  w = 0.2 * jax.random.normal(kw, (5, 5, 3, 4))
  b = 0.2 * jax.random.normal(kb, (4,))
  s = num_scales_for(16, 5)

  def scores(x, w, b):
    g2 = sf._kernel_factors(16, 5, s, "bicubic", jnp.float32)
    a, t2 = sf._prepare(x, w, g2)
    return sf._energy_scores(a, g2, t2, sf._inverse_tables(16, 5, jnp.float32), b)

  ours = jax.jit(scores)(x, w, b)                                         # (S, B, O)
  stack = jax.jit(lambda x, w, b: sf.siconv2d_fft(x, w, b, s, "bicubic"))(x, w, b)
  ref = jnp.transpose(jnp.sum(stack, axis=(2, 3)), (1, 0, 2))             # (S, B, O)
  assert rel_err(ours, ref) <= 1e-5


def test_siconv2d_pool_rejects_other_pools(rng):
  from stir_jax.layers.siconv import siconv2d_pool
  x = jnp.zeros((1, 13, 13, 1))
  with pytest.raises(ValueError, match="fuses only"):
    siconv2d_pool(x, jnp.zeros((5, 5, 1, 2)), jnp.zeros(2), num_scales=5, pool="soft")


def test_siconv2d_pool_non_square_uses_direct(rng):
  from stir_jax.layers.siconv import siconv2d_pool
  x = jax.random.normal(rng, (1, 16, 14, 2))
  w = jax.random.normal(rng, (5, 5, 2, 3))
  b = jnp.zeros(3)
  s = num_scales_for(14, 5)
  p, i = siconv2d_pool(x, w, b, num_scales=s)
  p_ref, i_ref = _pool_reference(x, w, b, s, "bicubic")
  np.testing.assert_array_equal(p, p_ref)
  np.testing.assert_array_equal(i, i_ref)


def test_fft_factors_computed_in_program_match_float64():
  """The DFT factors of the FFT path are computed in the program (iota, cos, sin) to keep it
  small; they equal the float64 NumPy construction to float32 accuracy."""
  from stir_jax.layers import siconv_fft
  from stir_jax.layers.interpolation import interpolation_matrix
  n, k, s, mode = 64, 7, 29, "bicubic"
  rows = np.arange(n)
  g = np.empty((s, n, k), np.complex128)
  for i in range(s):
    t = k + 2 * i
    emb = np.zeros((n, k))
    np.add.at(emb, (np.arange(t) - i) % n, interpolation_matrix(k, t, mode) * (k / t))
    g[i] = np.conj(np.exp(-2j * np.pi * np.outer(rows, rows) / n) @ emb)
  ref = np.concatenate([np.concatenate([g.real, -g.imag], -1),
                        np.concatenate([g.imag, g.real], -1)], 1)
  ours = jax.jit(siconv_fft._kernel_factors, static_argnums=(0, 1, 2, 3, 4))(
      n, k, s, mode, jnp.float32)
  assert np.max(np.abs(np.asarray(ours) - ref)) <= 2e-6 * np.max(np.abs(ref))
  i, o0, v = 5, n - k + 1, n // 2 + 1
  p = np.arange(i, o0 - i)
  tables = jax.jit(siconv_fft._inverse_tables, static_argnums=(0, 1, 2))(n, k, jnp.float32)
  e, f = siconv_fft._inverse_factors(tables, i)
  ref_e = np.exp(2j * np.pi * np.outer(p, rows) / n)
  ref_e = np.stack([np.stack([ref_e.real, -ref_e.imag], 1),
                    np.stack([ref_e.imag, ref_e.real], 1)], 1).reshape(2 * len(p), 2 * n)
  weights = np.where((np.arange(v) == 0) | (2 * np.arange(v) == n), 1.0, 2.0) / n**2
  ref_f = np.exp(2j * np.pi * np.outer(p, np.arange(v)) / n) * weights
  assert np.max(np.abs(np.asarray(e) - ref_e)) <= 1e-6
  assert np.max(np.abs(np.asarray(f) - np.concatenate([ref_f.real, -ref_f.imag], 1))) <= 1e-6 / n**2
