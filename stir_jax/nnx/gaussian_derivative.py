"""NNX twin of `stir_jax.layers.GaussDerConv` (Gaussian derivative layer, Lindeberg 2022)."""
from __future__ import annotations

from typing import Optional, Sequence

from flax import nnx
import jax
import jax.numpy as jnp

from stir_jax.layers.dtypes import DEFAULT_PRECISION, Dtype, PrecisionLike, promote_dtype
from stir_jax.layers.gaussian_derivative import JET_TERMS, gaussian_derivative_conv, he_jet_init
from stir_jax.nnx._common import check_channels


class GaussDerConv(nnx.Module):
  """Gaussian derivative layer over scale channels (`stir_jax.layers.gaussian_derivative_conv`):
  (B, H, W, in_features) or (B, S, H, W, in_features) -> (B, S, H, W, out_features), S =
  len(sigmas).

  Parameters: ``kernel`` (terms, in_features, out_features), terms 6 with ``zero_order`` else 5,
  N(0, 2 / in_features) (`he_jet_init`); ``bias`` (out_features,), zeros, with ``use_bias``.

  Args:
    in_features, out_features: input and output channels.
    sigmas: the scale of each scale channel (e.g. `stir_jax.layers.scale_series`).
    zero_order, method, gamma, epsilon: as `gaussian_derivative_conv`.
    use_bias: add ``bias``.
    dtype, param_dtype, precision: as the Linen module.
    rngs: draws the kernel.
  """

  def __init__(self, in_features: int, out_features: int, sigmas: Sequence[float], *,
               zero_order: bool = True, method: str = "discgauss", gamma: float = 1.0,
               epsilon: float = 1e-8, use_bias: bool = True, dtype: Optional[Dtype] = None,
               param_dtype: Dtype = jnp.float32, precision: PrecisionLike = DEFAULT_PRECISION,
               rngs: nnx.Rngs):
    terms = len(JET_TERMS) if zero_order else len(JET_TERMS) - 1
    self.kernel = nnx.Param(he_jet_init(rngs.params(), (terms, in_features, out_features),
                                        param_dtype))
    if use_bias:
      self.bias = nnx.Param(jnp.zeros((out_features,), param_dtype))
    self.in_features = in_features
    self.out_features = out_features
    self.sigmas = tuple(float(s) for s in sigmas)
    self.zero_order = zero_order
    self.method = method
    self.gamma = gamma
    self.epsilon = epsilon
    self.use_bias = use_bias
    self.dtype = dtype
    self.param_dtype = param_dtype
    self.precision = precision

  def __call__(self, x: jax.Array) -> jax.Array:
    check_channels("GaussDerConv", x, self.in_features)
    bias = self.bias[...] if self.use_bias else None
    x, kernel, bias = promote_dtype(x, self.kernel[...], bias, dtype=self.dtype)
    return gaussian_derivative_conv(x, kernel, bias, self.sigmas, zero_order=self.zero_order,
                                    method=self.method, gamma=self.gamma, epsilon=self.epsilon,
                                    precision=self.precision)
