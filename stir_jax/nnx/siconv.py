"""NNX twins of `stir_jax.layers.SiConv2d` and `stir_jax.layers.ScalePool`."""
from __future__ import annotations

import warnings
from typing import Optional

from flax import nnx
import jax
import jax.numpy as jnp

from stir_jax.layers.dtypes import DEFAULT_PRECISION, Dtype, PrecisionLike, promote_dtype
from stir_jax.layers.scale_pool import POOL_MODES, scale_pool
from stir_jax.layers.siconv import num_scales_for, siconv2d, siconv2d_pool
from stir_jax.nnx._common import check_channels, conv_params


class SiConv2d(nnx.Module):
  """Scale-invariant 2-D convolution (the paper's layer; `stir_jax.layers.siconv2d`), channels-last.

  Maps (B, H, W, in_features) to (B, S, H-k+1, W-k+1, out_features): the base kernel resized to
  every size ``k + 2i``, ``i < S``; with ``pool`` to `siconv2d_pool`'s ``(pooled, indices)``,
  pooled (B, H-k+1, W-k+1, out_features). Equivariant to translations exactly (valid region) and
  to rescaling only approximately.

  Parameters: ``kernel`` (k, k, in_features, out_features) and ``bias`` (out_features,), both
  ``U(+-1/sqrt(in_features k^2))`` as PyTorch (and the Linen `SiConv2d`).

  Args:
    in_features, out_features: input and output channels.
    kernel_size: k of the base kernel.
    num_scales: S; None derives it from the input, ``(min(H, W) - k)//2 + 1``.
    interpolation: kernel interpolation (`stir_jax.layers.MODES`); ``mode`` is its older name.
    impl: the form, "auto", "direct" or "fft" (see `siconv2d`).
    pool: None, or a fused scale pooling ("pixel", "slice", "energy").
    dtype, param_dtype, precision: as flax's Conv (precision default "highest").
    rngs: draws the parameters.

  >>> layer = SiConv2d(1, 8, kernel_size=7, pool="pixel", rngs=nnx.Rngs(0))
  >>> pooled, indices = layer(jnp.zeros((2, 32, 32, 1)))        # (2, 26, 26, 8) each
  """

  def __init__(self, in_features: int, out_features: int, *, kernel_size: int = 7,
               num_scales: Optional[int] = None, interpolation: str = "bicubic",
               impl: str = "auto", pool: Optional[str] = None, dtype: Optional[Dtype] = None,
               param_dtype: Dtype = jnp.float32, precision: PrecisionLike = DEFAULT_PRECISION,
               mode: Optional[str] = None, rngs: nnx.Rngs):
    if mode is not None:
      warnings.warn("SiConv2d(mode=...) is deprecated: use interpolation=...", DeprecationWarning,
                    stacklevel=2)
      interpolation = mode
    self.kernel, self.bias = conv_params(rngs, in_features, out_features, kernel_size,
                                         param_dtype)
    self.in_features = in_features
    self.out_features = out_features
    self.kernel_size = kernel_size
    self.num_scales = num_scales
    self.interpolation = interpolation
    self.impl = impl
    self.pool = pool
    self.dtype = dtype
    self.param_dtype = param_dtype
    self.precision = precision

  def __call__(self, x: jax.Array):
    """x: (B, H, W, in_features) -> (B, S, H', W', out_features), or (pooled, indices)."""
    check_channels("SiConv2d", x, self.in_features)
    x, kernel, bias = promote_dtype(x, self.kernel[...], self.bias[...], dtype=self.dtype)
    num_scales = self.num_scales
    if num_scales is None:
      num_scales = num_scales_for(min(x.shape[1], x.shape[2]), self.kernel_size)
    if self.pool is not None:
      return siconv2d_pool(x, kernel, bias, num_scales=num_scales, pool=self.pool, impl=self.impl,
                           precision=self.precision, interpolation=self.interpolation)
    return siconv2d(x, kernel, bias, num_scales=num_scales, impl=self.impl,
                    precision=self.precision, interpolation=self.interpolation)


class ScalePool(nnx.Module):
  """Scale pooling (`stir_jax.layers.scale_pool`): (B, S, H, W, C) -> ``(pooled (B, H, W, C),
  indices)``, indices (B, H, W, C) for pixel and soft, (B, C) for slice and energy.

  No parameters, except ``log_temperature`` (a scalar, zero: temperature 1) with
  ``learnable_temperature`` (soft pooling only).

  Args:
    mode: "pixel", "slice", "energy" or "soft" (`stir_jax.layers.POOL_MODES`).
    learnable_temperature: learn soft pooling's temperature.
    dtype: computation dtype (None: y's, promoted with the temperature's).
    param_dtype: dtype of ``log_temperature``.
    precision: accepted for the uniform signature (pooling has no matmul).
    rngs: accepted for the uniform signature (nothing is drawn).
  """

  def __init__(self, mode: str, *, learnable_temperature: bool = False,
               dtype: Optional[Dtype] = None, param_dtype: Dtype = jnp.float32,
               precision: PrecisionLike = DEFAULT_PRECISION, rngs: Optional[nnx.Rngs] = None):
    del rngs
    if mode not in POOL_MODES:
      raise ValueError(f"unknown scale pooling mode {mode!r}; valid modes are {POOL_MODES}")
    if learnable_temperature and mode != "soft":
      raise ValueError("learnable_temperature is only meaningful for mode 'soft'")
    if learnable_temperature:
      self.log_temperature = nnx.Param(jnp.zeros((), param_dtype))
    self.mode = mode
    self.learnable_temperature = learnable_temperature
    self.dtype = dtype
    self.param_dtype = param_dtype
    self.precision = precision

  def __call__(self, y: jax.Array) -> tuple[jax.Array, jax.Array]:
    """y: (B, S, H, W, C) -> (pooled, indices)."""
    if self.learnable_temperature:
      y, log_t = promote_dtype(y, self.log_temperature[...], dtype=self.dtype)
      return scale_pool(y, self.mode, jnp.exp(log_t))
    y, = promote_dtype(y, dtype=self.dtype)
    return scale_pool(y, self.mode)
