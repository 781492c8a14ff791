"""NNX twins of `stir_jax.layers.XuConv` (Xu et al.'s SiCNN layer) and `XuSesnConv` (the sesn
repository's ``XU_SIConv2d``)."""
from __future__ import annotations

from typing import Optional, Sequence

from flax import nnx
import jax
import jax.numpy as jnp

from stir_jax.layers.dtypes import DEFAULT_PRECISION, Dtype, PrecisionLike, promote_dtype
from stir_jax.layers.initializers import torch_uniform
from stir_jax.layers.xu import KERNEL_SIZES, column_conv2d, xu_kernels, xu_sesn_conv2d
from stir_jax.nnx._common import check_channels, divided


def _kernel(in_channels: int, out_features: int, k: int, param_dtype: Dtype,
            rngs: nnx.Rngs) -> nnx.Param:
  init = torch_uniform(in_channels * k * k)
  return nnx.Param(init(rngs.params(), (k, k, in_channels, out_features), param_dtype))


class XuConv(nnx.Module):
  """One Xu layer (`stir_jax.layers.xu_kernels` + `column_conv2d`): (B, H, W, in_features) ->
  ``(y (B, H, W, columns out_features), column kernels (m, m, in, columns out_features))``;
  channel ``g out_features + o`` belongs to column g (kernel size ``kernel_sizes[g]``).

  Parameter ``kernel`` (k, k, in, out_features), no bias, PyTorch's init; ``in = in_features``
  for an initial layer, ``in_features / columns`` otherwise (each column reads its own block, as
  the groups of flax's Conv).

  Args:
    in_features, out_features: input channels (all columns together), output channels per column.
    kernel_size: side of the trained kernel.
    kernel_sizes: the column kernel sizes.
    initial: True for the first layer (every column reads the whole input).
    impl, dtype, param_dtype, precision: as the Linen `XuConv`.
    rngs: draws the kernel.
  """

  def __init__(self, in_features: int, out_features: int, *, kernel_size: int = 7,
               kernel_sizes: Sequence[int] = KERNEL_SIZES, initial: bool = False,
               impl: str = "auto", dtype: Optional[Dtype] = None,
               param_dtype: Dtype = jnp.float32, precision: PrecisionLike = DEFAULT_PRECISION,
               rngs: nnx.Rngs):
    kernel_sizes = tuple(int(s) for s in kernel_sizes)
    groups = 1 if initial else len(kernel_sizes)
    in_channels = divided("XuConv", in_features, groups, "the number of columns")
    self.kernel = _kernel(in_channels, out_features, kernel_size, param_dtype, rngs)
    self.in_features = in_features
    self.out_features = out_features
    self.kernel_size = kernel_size
    self.kernel_sizes = kernel_sizes
    self.initial = initial
    self.impl = impl
    self.dtype = dtype
    self.param_dtype = param_dtype
    self.precision = precision

  def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    check_channels("XuConv", x, self.in_features)
    x, kernel = promote_dtype(x, self.kernel[...], dtype=self.dtype)
    kernels = xu_kernels(kernel, self.kernel_sizes, self.precision)
    y = column_conv2d(x, kernels, self.kernel.shape[0], self.kernel_sizes, not self.initial,
                      self.impl, self.precision)
    return y, kernels


class XuSesnConv(nnx.Module):
  """The sesn repository's ``XU_SIConv2d`` (`stir_jax.layers.xu_sesn_conv2d`):
  (B, H, W, in_features) -> (B, H', W', len(scales) out_features), channel ``s out_features + o``
  at scale s.

  Parameter ``kernel`` (k, k, in_features / num_input_scales, out_features), no bias, PyTorch's
  init.

  Args:
    in_features, out_features: input channels (all input scales together), outputs per scale.
    kernel_size: side of the trained kernel.
    scales: the scale factors.
    num_input_scales: 1, or len(scales) (grouped: input block s feeds output scale s).
    impl, dtype, param_dtype, precision: as the Linen `XuSesnConv`.
    rngs: draws the kernel.
  """

  def __init__(self, in_features: int, out_features: int, *, kernel_size: int = 7,
               scales: Sequence[float] = (1.0,), num_input_scales: int = 1, impl: str = "auto",
               dtype: Optional[Dtype] = None, param_dtype: Dtype = jnp.float32,
               precision: PrecisionLike = DEFAULT_PRECISION, rngs: nnx.Rngs):
    in_channels = divided("XuSesnConv", in_features, num_input_scales, "num_input_scales")
    self.kernel = _kernel(in_channels, out_features, kernel_size, param_dtype, rngs)
    self.in_features = in_features
    self.out_features = out_features
    self.kernel_size = kernel_size
    self.scales = tuple(float(s) for s in scales)
    self.num_input_scales = num_input_scales
    self.impl = impl
    self.dtype = dtype
    self.param_dtype = param_dtype
    self.precision = precision

  def __call__(self, x: jax.Array) -> jax.Array:
    check_channels("XuSesnConv", x, self.in_features)
    x, kernel = promote_dtype(x, self.kernel[...], dtype=self.dtype)
    return xu_sesn_conv2d(x, kernel, self.scales, self.num_input_scales, impl=self.impl,
                          precision=self.precision)
