"""NNX twins of the Deep Scale-Spaces layers (`stir_jax.layers.BesselConv2d`, `Dconv2d`)."""
from __future__ import annotations

from typing import Optional, Sequence

from flax import nnx
import jax
import jax.numpy as jnp

from stir_jax.layers.dss import dss_besselconv2d, dss_dconv2d, he_normal
from stir_jax.layers.dtypes import DEFAULT_PRECISION, Dtype, PrecisionLike, promote_dtype
from stir_jax.nnx._common import check_channels


class BesselConv2d(nnx.Module):
  """The Bessel lifting (`stir_jax.layers.dss_besselconv2d`): (B, H, W, C) -> (B, S, H, W, C),
  scale 0 the input, scale d its discrete-Gaussian blur. No parameters.

  Args:
    num_scales: S.
    base: scale factor between neighbouring scales.
    zero_scale: the input's assumed blur.
    dtype: computation dtype (None: x's).
    param_dtype: unused (no parameters); the uniform signature.
    precision: of the blur's matrix products.
    rngs: accepted for the uniform signature (nothing is drawn).
  """

  def __init__(self, num_scales: int, *, base: float = 2.0, zero_scale: float = 0.5,
               dtype: Optional[Dtype] = None, param_dtype: Dtype = jnp.float32,
               precision: PrecisionLike = DEFAULT_PRECISION, rngs: Optional[nnx.Rngs] = None):
    del rngs
    self.num_scales = num_scales
    self.base = base
    self.zero_scale = zero_scale
    self.dtype = dtype
    self.param_dtype = param_dtype
    self.precision = precision

  def __call__(self, x: jax.Array) -> jax.Array:
    x, = promote_dtype(x, dtype=self.dtype)
    return dss_besselconv2d(x, self.num_scales, base=self.base, zero_scale=self.zero_scale,
                            precision=self.precision)


class Dconv2d(nnx.Module):
  """The dilated semigroup convolution (`stir_jax.layers.dss_dconv2d`):
  (B, S_in, H, W, in_features) -> (B, S_out, H, W, out_features).

  Parameters in the reference layout (as the Linen module): ``weights`` (out_features,
  in_features, kS, kH, kW), He-normal (std ``sqrt(2 / (kS kH kW in_features))``); ``bias``
  (out_features,), ones, only with ``use_bias``.

  Args:
    in_features, out_features: input and output channels.
    kernel_size: (kS, kH, kW): scale taps and the spatial kernel.
    base: dilation base.
    num_out_scales: S_out (None: S_in).
    use_bias: whether the layer has a bias.
    dtype, param_dtype, precision: as the Linen module.
    rngs: draws the weights.
  """

  def __init__(self, in_features: int, out_features: int, *,
               kernel_size: Sequence[int] = (1, 7, 7), base: float = 2,
               num_out_scales: Optional[int] = None, use_bias: bool = False,
               dtype: Optional[Dtype] = None, param_dtype: Dtype = jnp.float32,
               precision: PrecisionLike = DEFAULT_PRECISION, rngs: nnx.Rngs):
    k_s, k_h, k_w = (int(k) for k in kernel_size)
    init = he_normal(k_s * k_h * k_w * in_features)
    self.weights = nnx.Param(init(rngs.params(), (out_features, in_features, k_s, k_h, k_w),
                                  param_dtype))
    if use_bias:
      self.bias = nnx.Param(jnp.ones((out_features,), param_dtype))
    self.in_features = in_features
    self.out_features = out_features
    self.kernel_size = (k_s, k_h, k_w)
    self.base = base
    self.num_out_scales = num_out_scales
    self.use_bias = use_bias
    self.dtype = dtype
    self.param_dtype = param_dtype
    self.precision = precision

  def __call__(self, x: jax.Array) -> jax.Array:
    check_channels("Dconv2d", x, self.in_features)
    bias = self.bias[...] if self.use_bias else None
    x, weights, bias = promote_dtype(x, self.weights[...], bias, dtype=self.dtype)
    return dss_dconv2d(x, weights, bias, base=self.base, num_out_scales=self.num_out_scales,
                       precision=self.precision)
