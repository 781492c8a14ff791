"""Kernel interpolation: resizing a k x k kernel to t x t as the reference's ``Interpolate`` does.

Every supported mode is separable, so resizing is a fixed linear map along each spatial axis: a
1-D matrix ``A`` of shape ``(t, k)`` with ``resized = A @ W @ A.T`` per channel pair. The reference
additionally multiplies by ``k**2 / t**2`` so that the kernel sum stays roughly constant across sizes.

Modes (PyTorch semantics, see the fixtures README section 1):

* ``nearest``: PyTorch's legacy nearest; output index ``o`` reads ``floor(o * k / t)``.
* ``bilinear``: half-pixel centres (``align_corners=False``), source coordinate clamped below at 0,
  upper neighbour clamped to ``k - 1``, no antialiasing.
* ``bicubic``: Keys cubic convolution with ``a = -0.75``, half-pixel centres, unclamped source
  coordinate, taps clamped into ``[0, k - 1]`` (edge replication), no renormalisation.
* ``area``: fractional box (area-overlap) resampling; output cell ``o`` covers the source interval
  ``[o * k / t, (o + 1) * k / t)`` and weighs each source cell by its overlap divided by ``k / t``.
  This is the reference's custom matrix, not PyTorch's ``mode='area'``.

Resizing commutes with nothing in particular: it is the approximate rescaling that makes
``SiConv2d`` approximately scale equivariant.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from stir_jax.layers.dtypes import DEFAULT_PRECISION, PrecisionLike, canonical_precision

MODES = ("nearest", "bilinear", "bicubic", "area")

_CUBIC_A = -0.75


def _check_mode(mode: str) -> None:
  if mode not in MODES:
    raise ValueError(f"unknown interpolation mode {mode!r}; valid modes are {MODES}")


def _nearest(k: int, t: int) -> np.ndarray:
  # PyTorch computes the scale in float32 (``(float)input_size / output_size``), then floors.
  scale = np.float32(k) / np.float32(t)
  out = np.arange(t, dtype=np.float32)
  src = np.minimum(np.floor(out * scale).astype(np.int64), k - 1)
  a = np.zeros((t, k))
  a[np.arange(t), src] = 1.0
  return a


def _bilinear(k: int, t: int) -> np.ndarray:
  scale = k / t
  src = np.maximum((np.arange(t) + 0.5) * scale - 0.5, 0.0)
  i0 = np.floor(src).astype(np.int64)
  i0 = np.minimum(i0, k - 1)
  i1 = np.where(i0 < k - 1, i0 + 1, i0)
  lam1 = src - i0
  a = np.zeros((t, k))
  rows = np.arange(t)
  np.add.at(a, (rows, i0), 1.0 - lam1)
  np.add.at(a, (rows, i1), lam1)
  return a


def _cubic_weights(frac: np.ndarray) -> np.ndarray:
  """The four Keys weights (a = -0.75) for taps floor(src) - 1 .. floor(src) + 2; shape (..., 4)."""
  aa = _CUBIC_A

  def near(x):  # |x| <= 1
    return ((aa + 2.0) * x - (aa + 3.0)) * x * x + 1.0

  def far(x):  # 1 < |x| < 2
    return ((aa * x - 5.0 * aa) * x + 8.0 * aa) * x - 4.0 * aa

  return np.stack([far(frac + 1.0), near(frac), near(1.0 - frac), far(2.0 - frac)], axis=-1)


def _bicubic(k: int, t: int) -> np.ndarray:
  scale = k / t
  src = (np.arange(t) + 0.5) * scale - 0.5
  base = np.floor(src).astype(np.int64)
  weights = _cubic_weights(src - base)
  a = np.zeros((t, k))
  rows = np.arange(t)
  for j in range(4):
    taps = np.clip(base - 1 + j, 0, k - 1)
    np.add.at(a, (rows, taps), weights[:, j])
  return a


def _area(k: int, t: int) -> np.ndarray:
  step = k / t
  lo = np.arange(t)[:, None] * step
  hi = lo + step
  cells = np.arange(k)[None, :]
  overlap = np.clip(np.minimum(hi, cells + 1.0) - np.maximum(lo, cells), 0.0, None)
  return overlap / step


_BUILDERS = {"nearest": _nearest, "bilinear": _bilinear, "bicubic": _bicubic, "area": _area}


@functools.lru_cache(maxsize=None)
def _cached_matrix(kernel_size: int, target_size: int, mode: str) -> np.ndarray:
  a = _BUILDERS[mode](kernel_size, target_size).astype(np.float64)
  a.setflags(write=False)
  return a


def interpolation_matrix(kernel_size: int, target_size: int, mode: str) -> np.ndarray:
  """The 1-D resize matrix of a mode, in PyTorch semantics.

  Args:
    kernel_size: source length k.
    target_size: target length t.
    mode: one of ``MODES``.

  Returns:
    A read-only float64 array of shape ``(target_size, kernel_size)``. A 2-D kernel ``W`` (k, k)
    resizes to ``A @ W @ A.T`` (t, t). The ``k**2 / t**2`` factor is *not* included.

  Raises:
    ValueError: for an unknown mode or non-positive sizes.
  """
  _check_mode(mode)
  kernel_size, target_size = int(kernel_size), int(target_size)
  if kernel_size < 1 or target_size < 1:
    raise ValueError(f"sizes must be positive, got kernel_size={kernel_size}, "
                     f"target_size={target_size}")
  return _cached_matrix(kernel_size, target_size, mode)


def resize_kernel(weight: jax.Array, target_size: int, mode: str,
                  precision: PrecisionLike = DEFAULT_PRECISION) -> jax.Array:
  """Resizes a kernel bank as the reference's ``Interpolate`` layer, ``k**2 / t**2`` included.

  Linear in ``weight`` and differentiable.

  Args:
    weight: kernels (k, k, Cin, Cout), HWIO.
    target_size: t.
    mode: one of ``MODES``.
    precision: of the einsum (see `stir_jax.layers.dtypes`).

  Returns:
    (t, t, Cin, Cout) = ``A W A^T * k**2 / t**2`` with ``A = interpolation_matrix(k, t, mode)``,
    in weight's dtype.
  """
  k = weight.shape[0]
  if weight.shape[1] != k:
    raise ValueError(f"kernel must be square, got spatial shape {weight.shape[:2]}")
  a = interpolation_matrix(k, target_size, mode) * (k / target_size)  # sqrt of k^2/t^2 per axis
  a = jnp.asarray(a, dtype=weight.dtype)
  return jnp.einsum("ya,abio,xb->yxio", a, weight, a, precision=canonical_precision(precision))
