"""SiCNN layer (Xu et al. 2014): one kernel shared by columns at different kernel sizes.

Each layer keeps one k x k kernel per (out, in) pair; column ``g`` uses it rescaled to size
``kernel_sizes[g]`` (3, 5, 7, 9, 11 by default): nearest upsampling above k, bilinear (corners
aligned) downsampling below, each resized kernel zero-padded to the largest size and
L1-renormalised to the padded original. The first layer feeds all columns from the image; later
layers are grouped so each column only sees its own maps. The convolutions use 'same' padding and
have no bias.

Scale behaviour: a column whose kernel size matches an object's scale responds like the base kernel
at the reference scale, so a max over columns is approximately invariant over the discrete set of
kernel sizes (0.43x to 1.57x by default); not exactly equivariant (kernel resampling and a fixed
image grid). Equivariant to integer translations (exactly, away from the borders).

Reference: ``XuConv2d`` of the authors' code.

>>> y = xu_conv2d(jnp.zeros((2, 64, 64, 1)), jnp.zeros((7, 7, 1, 16)))
>>> y.shape                                   # 5 columns of 16 channels
(2, 64, 64, 80)
"""
from __future__ import annotations

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
from stir_jax.layers.resample import center_pad_crop_matrix, linear_resize_matrix

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
  acc = float32_inside(kernel.dtype)
  l1 = lambda z: jnp.sum(jnp.abs(z), axis=(0, 1), keepdims=True, dtype=acc)
  norm = l1(padded)                                                               # (1, 1, I, O)
  # All columns at once (one einsum over the stacked resize matrices, not a loop over sizes).
  mats = jnp.asarray(np.stack([xu_resize_matrix(k, m, size) for size in kernel_sizes]),
                     kernel.dtype)                                               # (G, m, m)
  precision = canonical_precision(precision)
  rows = jnp.einsum("gah,hwio->gawio", mats, padded, precision=precision)
  scaled = jnp.einsum("gawio,gbw->abigo", rows, mats, precision=precision)      # (m, m, I, G, O)
  scaled = (scaled * norm[..., None, :] / l1(scaled)).astype(kernel.dtype)
  return scaled.reshape(m, m, kernel.shape[2], len(kernel_sizes) * kernel.shape[3])


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
    impl: convolution algorithm, see `stir_jax.layers.conv.conv2d` (auto: FFT for the grouped
      layer on CPU).
    precision: of the kernel resizing and the convolution.

  Returns:
    ``(batch, H, W, columns * out)`` in the promoted dtype of x and kernel; channel ``g * out + o``
    belongs to column g.
  """
  x, kernel = promote_dtype(x, kernel)
  kernels = xu_kernels(kernel, kernel_sizes, precision)
  return conv2d(x, kernels, padding=max(kernel_sizes) // 2, impl=impl,
                feature_group_count=len(kernel_sizes) if grouped else 1, precision=precision)


class XuConv(nn.Module):
  """One Xu layer over `xu_kernels` and `xu_conv2d`, with its kernel as the parameter ``kernel``.

  Attributes:
    features: output channels per column.
    kernel_size: side of the trained kernel.
    kernel_sizes: column kernel sizes.
    initial: True for the first layer (all columns read the whole input); otherwise the input holds
      one block of channels per column and each column reads only its own (grouped conv).
    impl: convolution algorithm, see `stir_jax.layers.conv.conv2d` (auto: FFT for the grouped
      layer on CPU).
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
    y = conv2d(x, kernels, padding=max(self.kernel_sizes) // 2, impl=self.impl,
               feature_group_count=groups, precision=self.precision)
    return y, kernels
