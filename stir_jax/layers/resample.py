"""Image resampling with PyTorch semantics, as pure functions on channels-last arrays.

The reference models resample images and feature maps with ``torch.nn.functional.interpolate``,
``affine_grid`` + ``grid_sample`` and kornia's Gaussian pyramid. These helpers reproduce those
conventions exactly (up to float32 rounding) so that ported models match the reference outputs.
Two of them are layer families of the models, with thin Flax modules at the end of this file:
the Gaussian scale-space pyramid (`gaussian_pyramid`, `GaussianPyramid`: the ensemble) and the
spatial transformer's sampler (`affine_warp`, `AffineWarp`).

Every separable resize here is linear with a fixed ``(out, in)`` matrix per axis, built once in
NumPy from the static shapes, and applied with two einsums: ``y = A_h x A_w^T`` per channel. This is
exact, differentiable, jit-friendly and cheap for the small (<= 128 pixel) maps of the models.

Dtypes: the separable resizes compute in x's dtype with the given ``precision`` (default
"highest"); the affine sampler computes its coordinates and weights in float32 (at least) and
returns x's dtype.

Layouts: images are ``(batch, height, width, channels)``; affine parameters ``theta`` are
``(batch, 2, 3)`` as in PyTorch; sampling grids are ``(batch, height, width, 2)`` holding
normalised ``(x, y)``.

Example:
  >>> import jax.numpy as jnp
  >>> x = jnp.ones((2, 64, 64, 1))
  >>> [p.shape for p in gaussian_pyramid(x, levels=3)]
  [(2, 64, 64, 1), (2, 32, 32, 1), (2, 16, 16, 1)]
"""
from __future__ import annotations

import functools
import math
from typing import Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from stir_jax.layers.dtypes import DEFAULT_PRECISION, Dtype, canonical_precision, float32_inside
from stir_jax.layers.dtypes import promote_dtype
from stir_jax.layers.dtypes import PrecisionLike as Precision
from stir_jax.layers.interpolation import interpolation_matrix


# --------------------------------------------------------------------------------------------------
# 1-D interpolation matrices, (out_size, in_size), float64 NumPy.
# --------------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def _aligned_linear_matrix(in_size: int, out_size: int) -> np.ndarray:
  """Linear interpolation with aligned corners, ``src = o * (in - 1) / (out - 1)`` (read-only)."""
  step = (in_size - 1) / (out_size - 1) if out_size > 1 else 0.0
  src = np.arange(out_size) * step
  lo = np.minimum(np.floor(src).astype(np.int64), in_size - 1)
  hi = np.minimum(lo + 1, in_size - 1)
  frac = src - lo
  mat = np.zeros((out_size, in_size), np.float64)
  rows = np.arange(out_size)
  np.add.at(mat, (rows, lo), 1.0 - frac)
  np.add.at(mat, (rows, hi), frac)
  mat.setflags(write=False)
  return mat


def linear_resize_matrix(in_size: int, out_size: int, align_corners: bool) -> np.ndarray:
  """1-D linear interpolation to a given size as a matrix, following ``F.interpolate(size=...,
  mode='bilinear')``.

  Args:
    in_size: input length.
    out_size: output length.
    align_corners: PyTorch's flag. True maps the end samples onto each other
      (``src = o * (in - 1) / (out - 1)``); False uses half-pixel centres
      (``src = (o + 0.5) * in / out - 0.5``, clamped below at 0; this is
      `stir_jax.layers.interpolation.interpolation_matrix` in "bilinear" mode).

  Returns:
    ``(out_size, in_size)`` float64 matrix ``A`` (read-only) with ``y = A @ x``. The upper neighbour
    is clamped to ``in_size - 1``; no antialiasing.
  """
  if not align_corners:
    return interpolation_matrix(in_size, out_size, "bilinear")
  return _aligned_linear_matrix(int(in_size), int(out_size))


def center_pad_crop_matrix(in_size: int, out_size: int) -> np.ndarray:
  """Zero-pad or crop a length-``in_size`` axis to ``out_size``, centred, as a matrix.

  The left amount is ``(out_size - in_size) // 2`` with floor division (negative when cropping),
  the right side gets the rest, as in the reference's ``F.pad`` with possibly negative pads. When an
  odd excess is cropped, the extra element comes off the left.

  Returns:
    ``(out_size, in_size)`` float64 0/1 matrix.
  """
  left = (out_size - in_size) // 2
  mat = np.zeros((out_size, in_size), np.float64)
  for o in range(out_size):
    i = o - left
    if 0 <= i < in_size:
      mat[o, i] = 1.0
  return mat


def scaled_size(size: int, scale_factor: float) -> int:
  """Output length of ``F.interpolate(scale_factor=...)``: ``floor(size * scale_factor)``."""
  return int(math.floor(float(size) * float(scale_factor)))


# --------------------------------------------------------------------------------------------------
# Applying separable matrices.
# --------------------------------------------------------------------------------------------------


def apply_separable(x: jax.Array, mat_h: np.ndarray | jax.Array, mat_w: np.ndarray | jax.Array,
                    axes: tuple[int, int] = (1, 2), precision: Precision = DEFAULT_PRECISION) -> jax.Array:
  """Applies ``A_h`` along axis ``axes[0]`` and ``A_w`` along ``axes[1]`` of ``x``.

  Args:
    x: array whose ``axes`` hold the spatial dimensions, e.g. ``(batch, H, W, C)``.
    mat_h: ``(H', H)`` matrix.
    mat_w: ``(W', W)`` matrix.
    axes: the two spatial axes.
    precision: matmul precision (float32-exact by default).

  Returns:
    ``x`` with the spatial axes resized to ``(H', W')``.
  """
  mat_h = jnp.asarray(mat_h, x.dtype)
  mat_w = jnp.asarray(mat_w, x.dtype)
  precision = canonical_precision(precision)
  y = jnp.moveaxis(x, axes, (-2, -1))
  y = jnp.einsum("oh,...hw->...ow", mat_h, y, precision=precision)
  y = jnp.einsum("pw,...hw->...hp", mat_w, y, precision=precision)
  return jnp.moveaxis(y, (-2, -1), axes)


def resize_bilinear(x: jax.Array, size: tuple[int, int], align_corners: bool,
                    precision: Precision = DEFAULT_PRECISION) -> jax.Array:
  """``F.interpolate(x, size, mode='bilinear', align_corners=...)`` on ``(B, H, W, C)``.

  Args:
    x: ``(batch, height, width, channels)``.
    size: output ``(height, width)``.
    align_corners: PyTorch's flag.
    precision: matmul precision.

  Returns:
    ``(batch, size[0], size[1], channels)``.
  """
  _, h, w, _ = x.shape
  mat_h = linear_resize_matrix(h, size[0], align_corners)
  mat_w = linear_resize_matrix(w, size[1], align_corners)
  return apply_separable(x, mat_h, mat_w, precision=precision)


def rescale_matrix(size: int, scale_factor: float) -> np.ndarray:
  """Bilinear (corners aligned) rescale by ``scale_factor``, then centred pad/crop back to ``size``.

  This is the Kanazawa layer's shape-preserving rescale of one axis:
  ``F.interpolate(scale_factor=s, mode='bilinear', align_corners=True)`` to ``floor(size * s)``,
  then ``F.pad`` (or crop) back to ``size`` as in `center_pad_crop_matrix`. A scale of exactly 1
  is the identity.

  Returns:
    ``(size, size)`` float64 matrix.
  """
  if scale_factor == 1:
    return np.eye(size)
  inner = scaled_size(size, scale_factor)
  return center_pad_crop_matrix(inner, size) @ linear_resize_matrix(size, inner, True)


# --------------------------------------------------------------------------------------------------
# Gaussian pyramid (kornia.geometry.build_pyramid).
# --------------------------------------------------------------------------------------------------

_BINOMIAL_5 = np.array([1.0, 4.0, 6.0, 4.0, 1.0]) / 16.0


def binomial_blur(x: jax.Array, precision: Precision = DEFAULT_PRECISION) -> jax.Array:
  """5x5 binomial blur ``[1,4,6,4,1]^T [1,4,6,4,1] / 256`` with reflect padding.

  Reflect padding mirrors about the edge pixel without repeating it (PyTorch/NumPy ``reflect``).
  Each channel is blurred separately.

  Args:
    x: ``(batch, height, width, channels)``, height and width at least 3.
    precision: matmul precision.

  Returns:
    Blurred array of the same shape.
  """
  _, h, w, _ = x.shape
  return apply_separable(x, _reflect_blur_matrix(h), _reflect_blur_matrix(w), precision=precision)


@functools.lru_cache(maxsize=None)
def _reflect_blur_matrix(n: int) -> np.ndarray:
  """``(n, n)`` matrix of the 1-D binomial blur with reflect padding 2."""
  mat = np.zeros((n, n), np.float64)
  for o in range(n):
    for t, wt in enumerate(_BINOMIAL_5):
      i = o + t - 2
      if i < 0:
        i = -i
      elif i >= n:
        i = 2 * (n - 1) - i
      mat[o, i] += wt
  mat.setflags(write=False)
  return mat


def pyramid_down(x: jax.Array, precision: Precision = DEFAULT_PRECISION) -> jax.Array:
  """One pyramid step: `binomial_blur`, then bilinear resize to half size (corners not aligned).

  The half size is ``floor(H / 2), floor(W / 2)``; for even sizes the bilinear resize equals 2x2
  average pooling. Matches ``kornia.geometry.pyrdown`` with its defaults.

  Args:
    x: ``(batch, height, width, channels)``.
    precision: matmul precision.

  Returns:
    ``(batch, height // 2, width // 2, channels)``.
  """
  _, h, w, _ = x.shape
  mat_h = linear_resize_matrix(h, h // 2, False) @ _reflect_blur_matrix(h)
  mat_w = linear_resize_matrix(w, w // 2, False) @ _reflect_blur_matrix(w)
  return apply_separable(x, mat_h, mat_w, precision=precision)


def gaussian_pyramid(x: jax.Array, levels: int = 3,
                     precision: Precision = DEFAULT_PRECISION) -> list[jax.Array]:
  """Gaussian pyramid ``[x, down(x), down(down(x)), ...]`` with ``levels`` entries.

  Args:
    x: ``(batch, height, width, channels)``.
    levels: number of levels, the input included (kornia's ``max_level``).
    precision: matmul precision.

  Returns:
    List of ``levels`` arrays; level ``l`` has spatial size ``H // 2**l`` (for powers of two).
  """
  pyramid = [x]
  for _ in range(levels - 1):
    pyramid.append(pyramid_down(pyramid[-1], precision=precision))
  return pyramid


# --------------------------------------------------------------------------------------------------
# Affine warping (F.affine_grid + F.grid_sample, bilinear, zeros, align_corners=False).
# --------------------------------------------------------------------------------------------------


def affine_grid(theta: jax.Array, size: Sequence[int],
                precision: Precision = DEFAULT_PRECISION) -> jax.Array:
  """``F.affine_grid(theta, size, align_corners=False)``, channels-last.

  Output pixel ``(i, j)`` has normalised coordinates ``xn = (2j + 1) / W - 1``,
  ``yn = (2i + 1) / H - 1``; its source point is ``theta @ (xn, yn, 1)``.

  Args:
    theta: ``(batch, 2, 3)`` affine matrices ``[[a, b, tx], [c, d, ty]]``.
    size: output ``(height, width)``.
    precision: of the einsum; the points are computed in float32 (at least).

  Returns:
    ``(batch, height, width, 2)`` normalised source points ``(x, y)``, float32 (at least).
  """
  theta = theta.astype(float32_inside(theta.dtype))
  h, w = size
  xn = (2.0 * jnp.arange(w, dtype=theta.dtype) + 1.0) / w - 1.0
  yn = (2.0 * jnp.arange(h, dtype=theta.dtype) + 1.0) / h - 1.0
  base = jnp.stack(
      [jnp.broadcast_to(xn[None, :], (h, w)), jnp.broadcast_to(yn[:, None], (h, w)),
       jnp.ones((h, w), theta.dtype)], axis=-1)  # (H, W, 3)
  return jnp.einsum("hwk,bjk->bhwj", base, theta, precision=canonical_precision(precision))


def grid_sample_bilinear(x: jax.Array, grid: jax.Array) -> jax.Array:
  """``F.grid_sample(x, grid, mode='bilinear', padding_mode='zeros', align_corners=False)``.

  Normalised ``(xs, ys)`` map to pixels as ``((xs + 1) * W - 1) / 2``. Each of the four bilinear
  taps that falls outside the image contributes zero. Differentiable in ``x`` and ``grid``.

  Args:
    x: ``(batch, height, width, channels)``.
    grid: ``(batch, out_height, out_width, 2)`` normalised ``(x, y)`` source points.

  Returns:
    ``(batch, out_height, out_width, channels)`` in x's dtype (coordinates, weights and the sum of
    the four taps in float32 at least).
  """
  _, h, w, _ = x.shape
  out_dtype = x.dtype
  inner = float32_inside(jnp.result_type(x, grid))
  x, grid = x.astype(inner), grid.astype(inner)
  ix = ((grid[..., 0] + 1.0) * w - 1.0) / 2.0
  iy = ((grid[..., 1] + 1.0) * h - 1.0) / 2.0
  x0 = jnp.floor(ix)
  y0 = jnp.floor(iy)
  wx1 = ix - x0
  wy1 = iy - y0
  wx0 = 1.0 - wx1
  wy0 = 1.0 - wy1

  def gather(img, yi, xi):
    return img[yi, xi]

  out = 0.0
  for yt, wy in ((y0, wy0), (y0 + 1.0, wy1)):
    for xt, wx in ((x0, wx0), (x0 + 1.0, wx1)):
      valid = (xt >= 0) & (xt <= w - 1) & (yt >= 0) & (yt <= h - 1)
      xi = jnp.clip(xt, 0, w - 1).astype(jnp.int32)
      yi = jnp.clip(yt, 0, h - 1).astype(jnp.int32)
      vals = jax.vmap(gather)(x, yi, xi)  # (B, Ho, Wo, C)
      out = out + vals * jnp.where(valid, wy * wx, 0.0)[..., None]
  return out.astype(out_dtype)


def affine_warp(x: jax.Array, theta: jax.Array,
                precision: Precision = DEFAULT_PRECISION) -> jax.Array:
  """Warps ``x`` by ``theta`` at its own size (`affine_grid` then `grid_sample_bilinear`).

  Args:
    x: ``(batch, height, width, channels)``.
    theta: ``(batch, 2, 3)``.
    precision: of the grid's einsum.

  Returns:
    ``(batch, height, width, channels)``, x's dtype.
  """
  return grid_sample_bilinear(x, affine_grid(theta, x.shape[1:3], precision))


# --------------------------------------------------------------------------------------------------
# Thin Flax modules (no parameters) over the pyramid and the sampler.
# --------------------------------------------------------------------------------------------------


class GaussianPyramid(nn.Module):
  """`gaussian_pyramid` as a layer: ``(B, H, W, C)`` -> list of ``levels`` maps, level l of size
  ``H // 2**l`` (the ensemble model's scale space). Approximately equivariant to downscaling by 2
  (one level down), up to blur and borders.

  Attributes:
    levels: number of levels, the input included.
    dtype: computation dtype (None: the input's).
    param_dtype: unused (no parameters); kept for the uniform layer signature.
    precision: of the resizing matmuls (default "highest").
  """
  levels: int = 3
  dtype: Optional[Dtype] = None
  param_dtype: Dtype = jnp.float32
  precision: Precision = DEFAULT_PRECISION

  def __call__(self, x: jax.Array) -> list[jax.Array]:
    x, = promote_dtype(x, dtype=self.dtype)
    return gaussian_pyramid(x, self.levels, self.precision)


class AffineWarp(nn.Module):
  """The spatial transformer's sampler (`affine_warp`): ``(x (B, H, W, C), theta (B, 2, 3))`` ->
  ``(B, H, W, C)``, x resampled bilinearly at ``theta @ (xn, yn, 1)`` (zeros outside). Identity
  theta returns x. Equivariant to nothing by construction: it applies the warp it is given.

  Attributes:
    dtype: computation dtype of the sampled values (None: x's); coordinates are float32.
    param_dtype: unused (no parameters); kept for the uniform layer signature.
    precision: of the sampling grid's einsum (default "highest").
  """
  dtype: Optional[Dtype] = None
  param_dtype: Dtype = jnp.float32
  precision: Precision = DEFAULT_PRECISION

  def __call__(self, x: jax.Array, theta: jax.Array) -> jax.Array:
    x, = promote_dtype(x, dtype=self.dtype)
    return affine_warp(x, theta, self.precision)
