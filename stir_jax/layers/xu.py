"""SiCNN layer (Xu et al. 2014): one kernel shared by columns at different kernel sizes.

Each layer keeps one k x k kernel per (out, in) pair; column ``g`` uses it rescaled to size
``kernel_sizes[g]`` (3, 5, 7, 9, 11 by default): nearest upsampling above k, bilinear (corners
aligned) downsampling below, each resized kernel zero-padded to the largest size and
L1-renormalised to the padded original. The first layer feeds all columns from the image; later
layers are grouped so each column only sees its own maps. The convolutions use 'same' padding and
have no bias; each runs over only the taps its column kernel can use (`column_supports`).

Scale behaviour: a column whose kernel size matches an object's scale responds like the base kernel
at the reference scale, so a max over columns is approximately invariant over the discrete set of
kernel sizes (0.43x to 1.57x by default); not exactly equivariant (kernel resampling and a fixed
image grid). Equivariant to integer translations (exactly, away from the borders).

Reference: ``XuConv2d`` of the authors' code (taltstidl/scale-equivariant-cnn,
``siconvnet/contrib/xu.py``), itself adapted from the sesn repository.

The sesn repository's version, ``XU_SIConv2d`` (ISosnovik/sesn, commit deaa16c,
``models/impl/scale_modules.py``; its MNIST-scale model uses scales 0.3 .. 3.33), is
`xu_sesn_kernels` / `xu_sesn_conv2d` / `XuSesnConv`. How it differs from the paper's layer:

* parametrisation: scale factors ``s`` instead of kernel sizes; the k x k kernel is zero-padded to
  ``K = k + 2 ceil((int(k max s) - k) / 2)`` (7 for k = 5 and max s = 1.59, 23 for k = 7 and
  3.33) instead of to the largest kernel size;
* resize rule: the padded K x K kernel itself is rescaled by the factor, to ``floor(K s)``:
  ``s > 1`` *upscales* with legacy nearest using the given factor (source ``floor(o *
  float32(1/s))``) and then centre-crops back to K; ``s < 1`` downscales bilinearly
  (``align_corners=True``, source ``o (K - 1) / (n - 1)``) and zero-pads back to K; ``s = 1`` is
  untouched. The paper's layer instead resizes the padded kernel to each target *size* (nearest
  with the ratio ``m / t`` for sizes above k, which shrinks the padded kernel, bilinear with
  aligned corners below k) and zero-pads back to the largest size;
* padding: ``int(k max s) // 2`` (equal to ``K // 2`` for odd k) instead of ``max size // 2``;
* the same in both: L1 renormalisation per (out, in) pair to the padded kernel, no bias,
  scale-major output channels (``s * out + o``), grouping by input scale (sesn:
  ``groups = num_input_scales``; paper: grouped unless the layer is initial); the sesn layer also
  passes a 1x1 kernel through unscaled for every scale.

>>> y = xu_conv2d(jnp.zeros((2, 64, 64, 1)), jnp.zeros((7, 7, 1, 16)))
>>> y.shape                                   # 5 columns of 16 channels
(2, 64, 64, 80)
"""
from __future__ import annotations

import functools
import math
from typing import Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from stir_jax.layers.conv import conv2d
from stir_jax.layers.dtypes import DEFAULT_PRECISION, Dtype, PrecisionLike, canonical_precision
from stir_jax.layers.dtypes import float32_inside, promote_dtype
from stir_jax.layers.initializers import torch_uniform
from stir_jax.layers.interpolation import interpolation_matrix
from stir_jax.layers.resample import center_pad_crop_matrix, linear_resize_matrix, scaled_size

KERNEL_SIZES = (3, 5, 7, 9, 11)


def xu_resize_matrix(kernel_size: int, max_size: int, size: int) -> np.ndarray:
  """One axis of Xu's kernel rescaling, on the kernel already zero-padded to ``max_size``.

  ``size == kernel_size``: identity. ``size > kernel_size``: nearest resize ``max_size -> size``.
  ``size < kernel_size``: bilinear ``align_corners=True`` resize ``max_size -> size``. Then centred
  zero padding back to ``max_size``.

  Returns:
    ``(max_size, max_size)`` float64.
  """
  if size == kernel_size:
    return np.eye(max_size)
  if size > kernel_size:
    resize = interpolation_matrix(max_size, size, "nearest")
  else:
    resize = linear_resize_matrix(max_size, size, True)
  return center_pad_crop_matrix(size, max_size) @ resize


def _resize_and_renormalise(padded: jax.Array, mats: np.ndarray,
                            precision: PrecisionLike) -> jax.Array:
  """Every column kernel ``A_g P A_g^T``, L1-renormalised to the padded kernel ``P`` per (in, out).

  padded: ``(m, m, I, O)``; mats: ``(G, m, m)`` -> ``(m, m, I, G * O)`` in padded's dtype (the L1
  norms are summed in float32 at least); output channel ``g * O + o`` is column ``g``.
  """
  m, _, i, o = padded.shape
  acc = float32_inside(padded.dtype)
  l1 = lambda z: jnp.sum(jnp.abs(z), axis=(0, 1), keepdims=True, dtype=acc)
  norm = l1(padded)                                                               # (1, 1, I, O)
  # All columns at once (one einsum over the stacked resize matrices, not a loop over sizes).
  mats = jnp.asarray(mats, padded.dtype)
  precision = canonical_precision(precision)
  rows = jnp.einsum("gah,hwio->gawio", mats, padded, precision=precision)
  scaled = jnp.einsum("gawio,gbw->abigo", rows, mats, precision=precision)      # (m, m, I, G, O)
  scaled = (scaled * norm[..., None, :] / l1(scaled)).astype(padded.dtype)
  return scaled.reshape(m, m, i, len(mats) * o)


def xu_kernels(kernel: jax.Array, kernel_sizes: Sequence[int] = KERNEL_SIZES,
               precision: PrecisionLike = DEFAULT_PRECISION) -> jax.Array:
  """The stack of rescaled, L1-renormalised kernels of one Xu layer.

  Args:
    kernel: ``(k, k, in, out)`` HWIO base kernel.
    kernel_sizes: the column kernel sizes (their max is the padded size).
    precision: of the resizing einsums.

  Returns:
    ``(m, m, in, len(kernel_sizes) * out)`` HWIO with ``m = max(kernel_sizes)``, kernel's dtype
    (the L1 norms are summed in float32 at least); output channel ``g * out + o`` is kernel ``o``
    at size ``kernel_sizes[g]``.
  """
  k = kernel.shape[0]
  m = max(kernel_sizes)
  pad = (m - k) // 2
  padded = jnp.pad(kernel, ((pad, pad), (pad, pad), (0, 0), (0, 0)))
  mats = np.stack([xu_resize_matrix(k, m, size) for size in kernel_sizes])
  return _resize_and_renormalise(padded, mats, precision)


@functools.lru_cache(maxsize=None)
def column_supports(kernel_size: int,
                    kernel_sizes: tuple[int, ...]) -> tuple[tuple[int, int], ...]:
  """Per column, the rows ``[r0, r1)`` of the padded ``m x m`` column kernel that can be non-zero
  (the same for columns: the resize is separable), widened to hold the centre ``m // 2``.

  A row can be non-zero only if its row of the resize matrix reads the padded kernel's k x k
  centre. For k = 7 and sizes 3, 5, 7, 9, 11 these are 1, 3, 7, 6 and 7 rows: bilinear 11 -> 3
  with aligned corners samples rows 0, 5 and 10 of the padded kernel, two of them in its zero
  border, so the size-3 column is a 1x1 kernel (the authors' rule, kept); nearest 11 -> 11 is the
  padded 7x7 kernel itself.
  """
  m = max(kernel_sizes)
  pad = (m - kernel_size) // 2
  out = []
  for size in kernel_sizes:
    rows = np.flatnonzero(np.any(xu_resize_matrix(kernel_size, m, size)[:, pad:pad + kernel_size]
                                 != 0, axis=1))
    r0, r1 = (int(rows[0]), int(rows[-1]) + 1) if rows.size else (m // 2, m // 2 + 1)
    out.append((min(r0, m // 2), max(r1, m // 2 + 1)))
  return tuple(out)


def column_conv2d(x: jax.Array, kernels: jax.Array, kernel_size: int,
                  kernel_sizes: Sequence[int] = KERNEL_SIZES, grouped: bool = False,
                  impl: str = "auto", precision: PrecisionLike = DEFAULT_PRECISION) -> jax.Array:
  """The 'same' convolution (padding ``m // 2``) of x with column kernels of `xu_kernels`, over
  only the rows and columns a column kernel can use (`column_supports`), the padding shifted to
  match: the sums of the m x m convolution less its products with zeros.

  A first layer (not grouped) is one convolution over the union of the supports (7 x 7 instead of
  11 x 11 for the default sizes). A grouped layer is one ungrouped convolution per column over its
  own support (1 + 9 + 49 + 36 + 49 taps per (in, out) pair instead of 5 x 121), which also avoids
  a grouped convolution, whose weight gradient XLA:CPU computes several hundred times slower than
  its forward pass. docs/performance.md has the measurements.

  Args:
    x: ``(batch, H, W, in)``; grouped: ``(batch, H, W, columns * in)``.
    kernels: ``(m, m, in, columns * out)`` from `xu_kernels` (taps outside a column's support
      must be zero, as `xu_kernels` makes them).
    kernel_size: side k of the base kernel the column kernels were resized from.
    kernel_sizes: the column kernel sizes.
    grouped: whether column g reads only block g of x.
    impl, precision: of each convolution, see `stir_jax.layers.conv.conv2d` (ungrouped, so
      "auto" takes XLA's convolution on every backend).

  Returns:
    ``(batch, H, W, columns * out)``.
  """
  m = max(kernel_sizes)
  supports = column_supports(kernel_size, tuple(kernel_sizes))
  pads = lambda r0, r1: ((m // 2 - r0, r1 - 1 - m // 2),) * 2
  conv = lambda z, r0, r1, ks: conv2d(z, ks[r0:r1, r0:r1], padding=pads(r0, r1), impl=impl,
                                      precision=precision)
  if not grouped:
    return conv(x, min(r0 for r0, _ in supports), max(r1 for _, r1 in supports), kernels)
  out = kernels.shape[-1] // len(kernel_sizes)
  cin = kernels.shape[2]
  return jnp.concatenate(
      [conv(x[..., g * cin:(g + 1) * cin], r0, r1, kernels[..., g * out:(g + 1) * out])
       for g, (r0, r1) in enumerate(supports)], axis=-1)


def xu_conv2d(x: jax.Array, kernel: jax.Array, kernel_sizes: Sequence[int] = KERNEL_SIZES, *,
              grouped: bool = False, impl: str = "auto",
              precision: PrecisionLike = DEFAULT_PRECISION) -> jax.Array:
  """One Xu layer: a bias-free 'same' convolution with the column kernels of `xu_kernels`.

  Args:
    x: ``(batch, H, W, in)``; grouped: ``(batch, H, W, columns * in)``, column g's maps in block g.
    kernel: ``(k, k, in, out)`` HWIO base kernel.
    kernel_sizes: the column kernel sizes (``columns = len(kernel_sizes)``).
    grouped: False for a first layer (every column reads all of x); True for a later layer
      (column g reads only block g: a grouped convolution).
    impl: algorithm of the column convolutions (`column_conv2d`), see
      `stir_jax.layers.conv.conv2d`; ungrouped, so auto takes XLA's convolution on every backend.
    precision: of the kernel resizing and the convolution.

  Returns:
    ``(batch, H, W, columns * out)`` in the promoted dtype of x and kernel; channel ``g * out + o``
    belongs to column g.
  """
  x, kernel = promote_dtype(x, kernel)
  kernels = xu_kernels(kernel, kernel_sizes, precision)
  return column_conv2d(x, kernels, kernel.shape[0], kernel_sizes, grouped, impl, precision)


class XuConv(nn.Module):
  """One Xu layer over `xu_kernels` and `xu_conv2d`, with its kernel as the parameter ``kernel``.

  Attributes:
    features: output channels per column.
    kernel_size: side of the trained kernel.
    kernel_sizes: column kernel sizes.
    initial: True for the first layer (all columns read the whole input); otherwise the input holds
      one block of channels per column and each column reads only its own (grouped conv).
    impl: algorithm of the column convolutions (`column_conv2d`), see
      `stir_jax.layers.conv.conv2d`; ungrouped, so auto takes XLA's convolution on every backend.
    dtype, param_dtype, precision: as flax.linen.Conv (precision default "highest").
  """
  features: int
  kernel_size: int = 7
  kernel_sizes: Sequence[int] = KERNEL_SIZES
  initial: bool = False
  impl: str = "auto"
  dtype: Optional[Dtype] = None
  param_dtype: Dtype = jnp.float32
  precision: PrecisionLike = DEFAULT_PRECISION

  @nn.compact
  def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Applies the layer.

    Args:
      x: ``(batch, H, W, in)``, or ``(batch, H, W, columns * in)`` when not initial.

    Returns:
      ``(y (batch, H, W, columns * features), column kernels (m, m, in, columns * features))``;
      channel ``g * features + o`` belongs to column ``g``.
    """
    groups = 1 if self.initial else len(self.kernel_sizes)
    in_channels = x.shape[-1] // groups
    k = self.kernel_size
    kernel = self.param("kernel", torch_uniform(in_channels * k * k),
                        (k, k, in_channels, self.features), self.param_dtype)
    x, kernel = promote_dtype(x, kernel, dtype=self.dtype)
    kernels = xu_kernels(kernel, self.kernel_sizes, self.precision)
    y = column_conv2d(x, kernels, k, self.kernel_sizes, not self.initial, self.impl,
                     self.precision)
    return y, kernels


# --------------------------------------------------------------------------------------------------
# The sesn repository's version: XU_SIConv2d (scale factors instead of kernel sizes).
# --------------------------------------------------------------------------------------------------


def xu_sesn_padded_size(kernel_size: int, scales: Sequence[float]) -> int:
  """``K = k + 2 ceil((int(k max(scales)) - k) / 2)``, the side the sesn layer pads kernels to."""
  return kernel_size + 2 * math.ceil((int(kernel_size * max(scales)) - kernel_size) / 2)


def xu_sesn_padding(kernel_size: int, scales: Sequence[float]) -> int:
  """The sesn layer's convolution padding ``int(k max(scales)) // 2`` (0 for a 1x1 kernel)."""
  return int(kernel_size * max(scales)) // 2 if kernel_size > 1 else 0


def _nearest_by_factor(in_size: int, out_size: int, scale: float) -> np.ndarray:
  """PyTorch's legacy nearest resize with a given ``scale_factor``, ``(out, in)``: source index
  ``min(floor(o * float32(1 / scale)), in - 1)`` in float32 (identity when the sizes agree, ``o //
  2`` at exactly twice the size)."""
  out = np.arange(out_size)
  if out_size == in_size:
    src = out
  elif out_size == 2 * in_size:
    src = out >> 1
  else:
    step = np.float32(1.0 / scale)
    src = np.minimum(np.floor(out.astype(np.float32) * step).astype(np.int64), in_size - 1)
  mat = np.zeros((out_size, in_size))
  mat[out, src] = 1.0
  return mat


def xu_sesn_resize_matrix(padded_size: int, scale: float) -> np.ndarray:
  """One axis of the sesn layer's kernel rescaling, on the kernel already padded to ``K``.

  ``scale == 1``: identity. ``scale > 1``: nearest with the scale factor (`_nearest_by_factor`) up
  to ``floor(K scale)``, then a centred crop back to ``K``. ``scale < 1``: bilinear
  ``align_corners=True`` down to ``floor(K scale)``, then centred zero padding back to ``K``
  (crop/pad left amount ``(K - n) // 2``, floor division).

  Returns:
    ``(K, K)`` float64.
  """
  if scale == 1:
    return np.eye(padded_size)
  size = scaled_size(padded_size, scale)
  if scale > 1:
    resize = _nearest_by_factor(padded_size, size, scale)
  else:
    resize = linear_resize_matrix(padded_size, size, True)
  return center_pad_crop_matrix(size, padded_size) @ resize


def xu_sesn_kernels(kernel: jax.Array, scales: Sequence[float],
                    precision: PrecisionLike = DEFAULT_PRECISION) -> jax.Array:
  """The rescaled, L1-renormalised kernels of the sesn repository's ``XU_SIConv2d``.

  The base kernel is zero-padded to ``K = xu_sesn_padded_size(k, scales)``, rescaled per scale by
  `xu_sesn_resize_matrix` and renormalised to the padded kernel's L1 norm per (out, in) pair. A
  1x1 kernel is repeated per scale, untouched (the reference's special case).

  Args:
    kernel: ``(k, k, in, out)`` HWIO base kernel.
    scales: the scale factors.
    precision: of the resizing einsums.

  Returns:
    ``(K, K, in, len(scales) * out)`` HWIO, kernel's dtype; output channel ``s * out + o`` is
    kernel ``o`` at ``scales[s]`` (the reference's ``transformed_kernel`` transposed).
  """
  k = kernel.shape[0]
  if k == 1:
    return jnp.tile(kernel, (1, 1, 1, len(scales)))
  size = xu_sesn_padded_size(k, scales)
  pad = (size - k) // 2
  padded = jnp.pad(kernel, ((pad, pad), (pad, pad), (0, 0), (0, 0)))
  mats = np.stack([xu_sesn_resize_matrix(size, float(s)) for s in scales])
  return _resize_and_renormalise(padded, mats, precision)


def xu_sesn_conv2d(x: jax.Array, kernel: jax.Array, scales: Sequence[float],
                   num_input_scales: int = 1, impl: str = "auto",
                   precision: PrecisionLike = DEFAULT_PRECISION) -> jax.Array:
  """The sesn repository's ``XU_SIConv2d``: a bias-free correlation with `xu_sesn_kernels`,
  padding ``int(k max(scales)) // 2``, ``groups = num_input_scales``.

  Args:
    x: ``(batch, H, W, num_input_scales * in)``; with several input scales, channel block ``s``
      holds scale ``s`` and feeds only output scale ``s``.
    kernel: ``(k, k, in, out)`` HWIO base kernel.
    scales: the scale factors.
    num_input_scales: 1 (every scale reads all of x) or ``len(scales)`` (grouped).
    impl: convolution algorithm, see `stir_jax.layers.conv.conv2d` (auto: FFT for the grouped
      layer on CPU).
    precision: of the kernel rescaling and the convolution.

  Returns:
    ``(batch, H', W', len(scales) * out)`` with ``H' = H + 2 padding - K + 1`` (``H`` for odd
    k); channel ``s * out + o`` is scale ``s``, filter ``o``.
  """
  if num_input_scales not in (1, len(scales)):
    raise ValueError(f"num_input_scales must be 1 or len(scales) = {len(scales)}, got "
                     f"{num_input_scales}")
  x, kernel = promote_dtype(x, kernel)
  kernels = xu_sesn_kernels(kernel, scales, precision)
  return conv2d(x, kernels, padding=xu_sesn_padding(kernel.shape[0], scales), impl=impl,
                feature_group_count=num_input_scales, precision=precision)


class XuSesnConv(nn.Module):
  """The sesn repository's ``XU_SIConv2d`` over `xu_sesn_conv2d`: ``(B, H, W, num_input_scales *
  in) -> (B, H', W', len(scales) * features)``.

  Parameter ``kernel`` (k, k, in, features) HWIO (the reference's ``weight`` (O, I, k, k)
  transposed), PyTorch's default init; no bias.

  Attributes:
    features: output channels per scale.
    kernel_size: side of the trained kernel.
    scales: the scale factors.
    num_input_scales: 1 or len(scales) (grouped; see `xu_sesn_conv2d`).
    impl: convolution algorithm, see `stir_jax.layers.conv.conv2d`.
    dtype, param_dtype, precision: as flax.linen.Conv (precision default "highest").
  """
  features: int
  kernel_size: int = 7
  scales: Sequence[float] = (1.0,)
  num_input_scales: int = 1
  impl: str = "auto"
  dtype: Optional[Dtype] = None
  param_dtype: Dtype = jnp.float32
  precision: PrecisionLike = DEFAULT_PRECISION

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    in_channels = x.shape[-1] // self.num_input_scales
    k = self.kernel_size
    kernel = self.param("kernel", torch_uniform(in_channels * k * k),
                        (k, k, in_channels, self.features), self.param_dtype)
    x, kernel = promote_dtype(x, kernel, dtype=self.dtype)
    return xu_sesn_conv2d(x, kernel, self.scales, self.num_input_scales, self.impl,
                          self.precision)
