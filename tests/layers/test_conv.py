"""The FFT convolution equals XLA's, forward and gradients, for every padding the models use."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from stir_jax.layers.conv import conv2d
from tests.helpers import rel_err


@pytest.mark.parametrize("padding", ["VALID", "SAME", 3, ((1, 2), (0, 3))])
def test_fft_equals_xla(padding):
  r = np.random.default_rng(0)
  x = jnp.asarray(r.random((3, 21, 18, 4)), jnp.float32)
  w = jnp.asarray(r.normal(size=(7, 7, 4, 5)), jnp.float32)
  b = jnp.asarray(r.normal(size=(5,)), jnp.float32)
  ref = conv2d(x, w, b, padding, impl="direct")
  out = conv2d(x, w, b, padding, impl="fft")
  assert out.shape == ref.shape
  assert rel_err(out, ref) <= 1e-5
  loss = lambda impl: lambda x, w, b: jnp.sum(jnp.sin(conv2d(x, w, b, padding, impl=impl)))
  g_ref = jax.grad(loss("direct"), argnums=(0, 1, 2))(x, w, b)
  g_fft = jax.grad(loss("fft"), argnums=(0, 1, 2))(x, w, b)
  for a, c in zip(g_fft, g_ref):
    assert rel_err(a, c) <= 1e-5


@pytest.mark.parametrize("groups,padding", [(3, "VALID"), (2, 5), (4, ((2, 0), (1, 1)))])
def test_grouped_fft_equals_xla(groups, padding):
  r = np.random.default_rng(2)
  x = jnp.asarray(r.random((2, 19, 23, 2 * groups)), jnp.float32)
  w = jnp.asarray(r.normal(size=(9, 9, 2, 3 * groups)), jnp.float32)
  kw = dict(padding=padding, feature_group_count=groups)
  ref = conv2d(x, w, impl="direct", **kw)
  assert rel_err(conv2d(x, w, impl="fft", **kw), ref) <= 1e-5
  loss = lambda impl: lambda x, w: jnp.sum(jnp.sin(conv2d(x, w, impl=impl, **kw)))
  for a, c in zip(jax.grad(loss("fft"), argnums=(0, 1))(x, w),
                  jax.grad(loss("direct"), argnums=(0, 1))(x, w)):
    assert rel_err(a, c) <= 1e-5


def test_grouped_shape_mismatch():
  with pytest.raises(ValueError, match="groups does not fit"):
    conv2d(jnp.zeros((1, 8, 8, 5)), jnp.zeros((3, 3, 2, 4)), impl="fft", feature_group_count=2)


def test_fft_size_and_auto_choice():
  from stir_jax.layers.conv import fft_size, pick_impl
  assert [fft_size(n) for n in (29, 58, 64, 74, 97)] == [30, 60, 64, 75, 98]
  cpu = jax.default_backend() == "cpu"
  assert pick_impl(5) == ("fft" if cpu else "direct")
  assert pick_impl(1) == "direct"
  assert pick_impl(5, "cpu") == "fft" and pick_impl(5, "gpu") == pick_impl(5, "tpu") == "direct"
  # a kernel larger than its input: XLA:CPU's slow case (15x15 on 14x14 maps, MNIST-scale SESN)
  assert pick_impl(1, "cpu", (15, 15), (14, 14)) == "fft"
  assert pick_impl(1, "cpu", (15, 15), (16, 16)) == "direct"
  assert pick_impl(1, "cpu", (3, 15), (28, 14)) == "fft"
  assert pick_impl(1, "gpu", (15, 15), (14, 14)) == "direct"
  # and conv2d's "auto" passes the shapes: the FFT form runs for 15x15 on 14x14, XLA's on 16x16
  hlo = lambda n: jax.jit(lambda x, w: conv2d(x, w, padding=7)).trace(
      jnp.zeros((1, n, n, 2)), jnp.zeros((15, 15, 2, 3))).lower(
          lowering_platforms=("cpu",)).as_text()
  assert "stablehlo.fft" in hlo(14) and "stablehlo.convolution" not in hlo(14)
  assert "stablehlo.convolution" in hlo(16) and "stablehlo.fft" not in hlo(16)


def test_unknown_impl():
  with pytest.raises(ValueError, match="valid: auto, direct, fft"):
    conv2d(jnp.zeros((1, 8, 8, 1)), jnp.zeros((3, 3, 1, 1)), impl="winograd")


def test_conv3d_fft_equals_xla():
  from stir_jax.layers.conv import conv3d
  r = np.random.default_rng(1)
  x = jnp.asarray(r.random((2, 11, 12, 13, 3)), jnp.float32)  # FFT lengths 12, 12, 14
  w = jnp.asarray(r.normal(size=(3, 5, 5, 3, 4)), jnp.float32)
  b = jnp.asarray(r.normal(size=(4,)), jnp.float32)
  assert rel_err(conv3d(x, w, b, impl="fft"), conv3d(x, w, b, impl="direct")) <= 1e-5
  loss = lambda impl: lambda x, w: jnp.sum(jnp.sin(conv3d(x, w, b, impl=impl)))
  for a, c in zip(jax.grad(loss("fft"), argnums=(0, 1))(x, w),
                  jax.grad(loss("direct"), argnums=(0, 1))(x, w)):
    assert rel_err(a, c) <= 1e-5


@pytest.mark.parametrize("sizes", [(12, 14), (11, 9, 10)])
def test_kernel_spectrum_is_conjugate_rfftn(sizes):
  from stir_jax.layers.conv import _kernel_spectrum
  r = np.random.default_rng(2)
  kernel = r.normal(size=(3, 4, 5)[:len(sizes)] + (2, 3)).astype(np.float32)
  ref = np.conj(np.fft.rfftn(kernel, s=sizes, axes=tuple(range(len(sizes)))))
  assert rel_err(_kernel_spectrum(jnp.asarray(kernel), sizes), ref) <= 1e-5


def _relu_max_reference(x, w, b):
  from stir_jax.layers.conv import conv3d
  return jnp.max(jax.nn.relu(conv3d(x, w, b, impl="direct")), axis=(1, 2, 3))


@pytest.mark.parametrize("impl", ["direct", "fft"])
def test_conv3d_relu_max_equals_autodiff_of_the_unfused_head(impl):
  """Values and all three gradients equal jnp.max(relu(conv3d)) and its autodiff where no two
  positions share a channel's maximum; channel 0 is dead (bias -100: ReLU off everywhere), so it
  passes no gradient on either side."""
  from stir_jax.layers.conv import conv3d_relu_max
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.standard_normal((3, 9, 11, 10, 4)), jnp.float32)
  w = jnp.asarray(rng.standard_normal((3, 3, 3, 4, 5)) * 0.2, jnp.float32)
  b = jnp.asarray(rng.standard_normal(5) * 0.1, jnp.float32).at[0].set(-100.0)
  fused = lambda x, w, b: conv3d_relu_max(x, w, b, impl=impl)
  assert rel_err(fused(x, w, b), _relu_max_reference(x, w, b)) <= 1e-6
  assert float(jnp.max(_relu_max_reference(x, w, b)[:, 0])) == 0.0
  c = jnp.asarray(rng.standard_normal((3, 5)), jnp.float32)
  grads = [jax.grad(lambda x, w, b: jnp.sum(f(x, w, b) * c), argnums=(0, 1, 2))(x, w, b)
           for f in (fused, _relu_max_reference)]
  for got, want in zip(*grads):
    assert float(jnp.max(jnp.abs(want))) > 0
    assert rel_err(got, want) <= 1e-5
  assert float(jnp.max(jnp.abs(grads[0][2][0]))) == 0.0  # the dead channel's bias


def test_conv3d_relu_max_sends_a_tied_maximum_to_its_first_position():
  """A constant input makes every window tie. As PyTorch's max_pool3d (the authors' global max),
  the gradient goes to the first window in (depth, height, width) order alone: x's gradient is the
  kernel placed at the origin; jnp.max would spread it over all 3 x 4 x 2 windows."""
  from stir_jax.layers.conv import conv3d_relu_max
  x = jnp.ones((1, 4, 5, 3, 2), jnp.float32)
  w = jnp.asarray(np.random.default_rng(1).uniform(0.1, 1.0, (2, 2, 2, 2, 1)), jnp.float32)
  b = jnp.zeros((1,), jnp.float32)
  gx, gw, gb = jax.grad(lambda x, w, b: jnp.sum(conv3d_relu_max(x, w, b)),
                        argnums=(0, 1, 2))(x, w, b)
  want = jnp.zeros_like(x).at[0, :2, :2, :2, :].set(w[..., 0])
  np.testing.assert_allclose(gx, want, rtol=0, atol=0)
  np.testing.assert_allclose(gw, jnp.ones_like(w), rtol=0, atol=0)  # the first window's x: ones
  np.testing.assert_allclose(gb, [1.0])
  spread = jax.grad(lambda x: jnp.sum(_relu_max_reference(x, w, b)))(x)
  assert float(jnp.max(jnp.abs(spread - want))) > 0.1  # the unfused head splits it


def test_conv3d_relu_max_keeps_low_precision_dtypes():
  from stir_jax.layers.conv import conv3d_relu_max
  rng = np.random.default_rng(2)
  x = jnp.asarray(rng.standard_normal((2, 6, 7, 7, 3)), jnp.bfloat16)
  w = jnp.asarray(rng.standard_normal((3, 3, 3, 3, 4)) * 0.2, jnp.bfloat16)
  b = jnp.zeros((4,), jnp.bfloat16)
  out = conv3d_relu_max(x, w, b)
  gx, gw = jax.grad(lambda x, w: jnp.sum(conv3d_relu_max(x, w, b).astype(jnp.float32)),
                    argnums=(0, 1))(x, w)
  assert out.dtype == gx.dtype == gw.dtype == jnp.bfloat16
