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
