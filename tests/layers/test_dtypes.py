"""bfloat16 and float16 on every path of every layer function: the output keeps the input's dtype,
stays close to the float32 result, and the gradient is finite. The FFT forms run in float32 inside,
so their error is the input's and the output's rounding only.

Tolerance: max|low - f32| / max|f32| <= 0.03 (bfloat16) or 0.005 (float16); inputs, weights and the
output are rounded once each (2^-9 and 2^-12 relative), the direct paths also their intermediates.
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from stir_jax.layers import conv, resample, siconv
from stir_jax.layers.scale_pool import scale_pool
from stir_jax.layers.xu import xu_kernels

TOLERANCE = {jnp.bfloat16: 0.03, jnp.float16: 0.005}
S = siconv.num_scales_for(15, 5)

CASES = {
    "siconv2d direct": (lambda x, w, b: siconv.siconv2d(x, w, b, num_scales=S, impl="direct"),
                        (2, 15, 15, 3), (5, 5, 3, 4)),
    "siconv2d fft": (lambda x, w, b: siconv.siconv2d(x, w, b, num_scales=S, impl="fft"),
                     (2, 15, 15, 3), (5, 5, 3, 4)),
    "siconv2d_pool pixel fft": (
        lambda x, w, b: siconv.siconv2d_pool(x, w, b, num_scales=S, impl="fft")[0],
        (2, 15, 15, 3), (5, 5, 3, 4)),
    "siconv2d_pool slice fft": (
        lambda x, w, b: siconv.siconv2d_pool(x, w, b, num_scales=S, impl="fft", pool="slice")[0],
        (2, 15, 15, 3), (5, 5, 3, 4)),
    "siconv2d_pool energy direct": (
        lambda x, w, b: siconv.siconv2d_pool(x, w, b, num_scales=S, impl="direct",
                                             pool="energy")[0],
        (2, 15, 15, 3), (5, 5, 3, 4)),
    "conv2d direct": (lambda x, w, b: conv.conv2d(x, w, b, "SAME", impl="direct"),
                   (2, 12, 12, 3), (5, 5, 3, 4)),
    "conv2d fft": (lambda x, w, b: conv.conv2d(x, w, b, "SAME", impl="fft"),
                   (2, 12, 12, 3), (5, 5, 3, 4)),
    "conv2d grouped fft": (lambda x, w, b: conv.conv2d(x, w, b, 2, impl="fft",
                                                       feature_group_count=3),
                           (2, 12, 12, 6), (5, 5, 2, 6)),
    "conv3d direct": (lambda x, w, b: conv.conv3d(x, w, b, impl="direct"),
                   (2, 6, 9, 9, 3), (3, 3, 3, 3, 4)),
    "conv3d fft": (lambda x, w, b: conv.conv3d(x, w, b, impl="fft"),
                   (2, 6, 9, 9, 3), (3, 3, 3, 3, 4)),
    "xu_kernels": (lambda x, w, b: conv.conv2d(x, xu_kernels(w, (3, 5, 7)), jnp.tile(b, 3), 3,
                                               impl="direct"),
                   (2, 12, 12, 3), (5, 5, 3, 4)),
}


def _arrays(x_shape, w_shape, channels_out):
  r = np.random.default_rng(0)
  x = jnp.asarray(r.random(x_shape), jnp.float32)
  w = jnp.asarray(r.normal(size=w_shape) / np.sqrt(np.prod(w_shape[:-1])), jnp.float32)
  b = jnp.asarray(r.normal(size=(channels_out,)) * 0.1, jnp.float32)
  return x, w, b


def _close(low, ref, dtype):
  err = float(jnp.max(jnp.abs(low.astype(jnp.float32) - ref)) / jnp.max(jnp.abs(ref)))
  assert err <= TOLERANCE[dtype], err


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
@pytest.mark.parametrize("case", sorted(CASES))
def test_low_precision_paths(case, dtype):
  fn, x_shape, w_shape = CASES[case]
  x, w, b = _arrays(x_shape, w_shape, w_shape[-1])

  @jax.jit
  def run(x, w, b):
    ref = fn(x, w, b)
    low_args = [a.astype(dtype) for a in (x, w, b)]
    low = fn(*low_args)
    # A mean, not a sum: float16 has no range to spare (a summed loss overflows its gradients,
    # the usual reason for loss scaling).
    grads = jax.grad(lambda *a: jnp.mean(fn(*a).astype(jnp.float32) ** 2), (0, 1, 2))(*low_args)
    return ref, low, grads

  ref, low, grads = run(x, w, b)
  assert low.dtype == dtype and low.shape == ref.shape
  _close(low, ref, dtype)
  for g, a in zip(grads, (x, w, b)):
    assert g.dtype == dtype and g.shape == a.shape
    assert bool(jnp.all(jnp.isfinite(g))) and float(jnp.max(jnp.abs(g))) > 0


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
def test_low_precision_resampling_and_pools(dtype):
  r = np.random.default_rng(1)
  x = jnp.asarray(r.random((2, 16, 16, 3)), jnp.float32)
  theta = jnp.asarray([[[0.9, 0.1, 0.05], [-0.05, 1.1, 0.02]]] * 2, jnp.float32)
  y = jnp.asarray(r.normal(size=(2, 5, 6, 6, 3)), jnp.float32)
  checks = {
      "affine_warp": (lambda x, t: resample.affine_warp(x, t), (x, theta)),
      "gaussian_pyramid": (lambda x: resample.gaussian_pyramid(x, 3)[2], (x,)),
      "soft pool": (lambda y: scale_pool(y, "soft")[0], (y,)),
      "energy pool": (lambda y: scale_pool(y, "energy")[0], (y,)),
  }
  for name, (fn, args) in checks.items():
    ref = jax.jit(fn)(*args)
    low = jax.jit(fn)(*(a.astype(dtype) for a in args))
    assert low.dtype == dtype, name
    _close(low, ref, dtype)


def test_precision_reaches_the_direct_path():
  """precision="default" and "highest" give different programs on the direct path; the FFT path
  keeps its HIGHEST products either way."""
  x, w, b = _arrays((1, 11, 11, 2), (5, 5, 2, 3), 3)
  s = siconv.num_scales_for(11, 5)
  text = lambda impl, p: jax.jit(functools.partial(
      siconv.siconv2d, num_scales=s, impl=impl, precision=p)).lower(x, w, b).as_text()
  assert "HIGHEST" in text("direct", "highest") and "HIGHEST" not in text("direct", "default")
  assert "HIGHEST" in text("fft", "default")
