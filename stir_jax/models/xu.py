"""SiCNN (Xu et al. 2014): multi-column CNN whose columns share one kernel at different sizes.

Each layer keeps one 7x7 kernel per (out, in) pair; column ``g`` uses it rescaled to size
``kernel_sizes[g]`` (3, 5, 7, 9, 11): nearest upsampling above 7, bilinear (corners aligned)
downsampling below, each resized kernel zero-padded to 11x11 and L1-renormalised to the padded
original. Layer 1 feeds all columns from the image; layer 2 is grouped so each column only sees its
own layer-1 maps; the columns are max-pooled, then a global max and a dense layer follow. All convs
use 'same' padding (5) and have no bias, so maps stay 64x64.

Scale behaviour: a column whose kernel size matches an object's scale responds like the 7x7 kernel
at the reference scale, and the max over columns makes the response approximately invariant over the
discrete set of 5 kernel sizes (0.43x to 1.57x); it is not exactly equivariant (kernel resampling
and fixed image grid).

Reference: ``XuConv2d`` / the Xu model of the authors' code (``conv1.weight``, ``conv2.weight``,
``lin.*``).

Example:
  >>> import jax, jax.numpy as jnp
  >>> model = XuModel(num_classes=10)
  >>> x = jnp.zeros((2, 64, 64, 1))
  >>> variables = model.init(jax.random.PRNGKey(0), x)
  >>> model.apply(variables, x).shape
  (2, 10)
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
from stir_jax.models import common

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
  norm = l1(padded)
  stack = []
  for size in kernel_sizes:
    mat = jnp.asarray(xu_resize_matrix(k, m, size), kernel.dtype)
    scaled = jnp.einsum("ah,hwio,bw->abio", mat, padded, mat,
                        precision=canonical_precision(precision))
    stack.append((scaled * norm / l1(scaled)).astype(kernel.dtype))
  return jnp.concatenate(stack, axis=-1)


class XuConv(nn.Module):
  """One Xu layer: a bias-free 'same' conv with the column kernels of `xu_kernels`.

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
  dtype: Optional[Dtype] = None  # computation dtype; None: inferred (float32 for float32 images)
  param_dtype: Dtype = jnp.float32
  precision: PrecisionLike = DEFAULT_PRECISION  # of every conv and matmul ("default": backend's)

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
    pad = max(self.kernel_sizes) // 2
    y = conv2d(x, kernels, padding=pad, impl=self.impl, feature_group_count=groups,
               precision=self.precision)
    return y, kernels


class XuModel(nn.Module):
  """SiCNN column network: Xu layer C->16 per column, ReLU, grouped Xu layer 16->32, ReLU, max over
  columns, global max, dense.

  Attributes:
    num_classes: logits per sample.
    kernel_size: side of the trained kernels.
    interpolation: unused (kept for a uniform model signature).
    kernel_sizes: column kernel sizes.
    impl: convolution algorithm of both layers, see `stir_jax.layers.conv.conv2d`.
    dtype, param_dtype, precision: as flax.linen.Conv (precision default "highest").
  """
  num_classes: int
  kernel_size: int = 7
  interpolation: str = "bicubic"
  kernel_sizes: Sequence[int] = KERNEL_SIZES
  impl: str = "auto"
  dtype: Optional[Dtype] = None  # computation dtype; None: inferred (float32 for float32 images)
  param_dtype: Dtype = jnp.float32
  precision: PrecisionLike = DEFAULT_PRECISION  # of every conv and matmul ("default": backend's)

  @nn.compact
  def __call__(self, x: jax.Array, with_aux: bool = False):
    """Classifies ``x``.

    Args:
      x: ``(batch, 64, 64, channels)`` float32 images.
      with_aux: also return intermediates.

    Returns:
      ``logits (batch, num_classes)``, or ``(logits, aux)`` with aux ``features`` (B, 32),
      ``conv1_kernel`` (11, 11, C, 80) and ``conv2_kernel`` (11, 11, 16, 160) (HWIO column kernels).
    """
    columns = len(self.kernel_sizes)
    dt = common.dtype_kwargs(self)
    x = common.compute_input(x, self.dtype)
    y, kernel1 = XuConv(16, self.kernel_size, self.kernel_sizes, True, self.impl, name="conv1",
                        **dt)(x)
    y = nn.relu(y)
    y, kernel2 = XuConv(32, self.kernel_size, self.kernel_sizes, False, self.impl, name="conv2",
                        **dt)(y)
    y = nn.relu(y)
    y = jnp.max(y.reshape(*y.shape[:3], columns, 32), axis=3)
    features = common.global_max(y)
    logits = common.Dense(self.num_classes, name="lin", **dt)(features)
    if not with_aux:
      return logits
    return logits, {"features": features, "conv1_kernel": kernel1, "conv2_kernel": kernel2}

  @staticmethod
  def from_torch(state: dict[str, np.ndarray]) -> dict:
    """Reference state_dict (``conv1.weight``, ``conv2.weight``, ``lin.*``) to ``params``."""
    return {"conv1": common.torch_conv(state, "conv1"), "conv2": common.torch_conv(state, "conv2"),
            "lin": common.torch_dense(state, "lin")}


from_torch = XuModel.from_torch
