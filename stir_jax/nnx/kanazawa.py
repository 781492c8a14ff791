"""NNX twin of `stir_jax.layers.KanazawaConv` (the SI-ConvNet layer, Kanazawa et al. 2014)."""
from __future__ import annotations

from typing import Optional, Sequence

from flax import nnx
import jax
import jax.numpy as jnp

from stir_jax.layers.dtypes import DEFAULT_PRECISION, Dtype, PrecisionLike, promote_dtype
from stir_jax.layers.kanazawa import SCALES, kanazawa_conv2d
from stir_jax.nnx._common import check_channels, conv_params


class KanazawaConv(nnx.Module):
  """SI-ConvNet layer (`stir_jax.layers.kanazawa_conv2d`, without its ReLU): rescale the input by
  every factor, one shared conv + bias, rescale back, maximum over scales. (B, H, W, in_features)
  -> (B, H + 2 padding - k + 1, same, out_features).

  Parameters ``kernel`` (k, k, in_features, out_features) and ``bias`` (out_features,), PyTorch's
  init (the Linen module keeps the same two under ``conv/``).

  Args:
    in_features, out_features: input and output channels.
    kernel_size: conv kernel side.
    scales: the rescaling factors (1 passes the input through untouched).
    impl, dtype, param_dtype, precision: as the Linen `KanazawaConv`.
    padding: zero padding of the shared convolution (0 in the paper's models).
    rngs: draws the parameters.
  """

  def __init__(self, in_features: int, out_features: int, *, kernel_size: int = 7,
               scales: Sequence[float] = SCALES, impl: str = "auto",
               dtype: Optional[Dtype] = None, param_dtype: Dtype = jnp.float32,
               precision: PrecisionLike = DEFAULT_PRECISION, padding: int = 0,
               rngs: nnx.Rngs):
    self.kernel, self.bias = conv_params(rngs, in_features, out_features, kernel_size,
                                         param_dtype)
    self.in_features = in_features
    self.out_features = out_features
    self.kernel_size = kernel_size
    self.scales = tuple(float(s) for s in scales)
    self.impl = impl
    self.dtype = dtype
    self.param_dtype = param_dtype
    self.precision = precision
    self.padding = padding

  def __call__(self, x: jax.Array) -> jax.Array:
    check_channels("KanazawaConv", x, self.in_features)
    x, kernel, bias = promote_dtype(x, self.kernel[...], self.bias[...], dtype=self.dtype)
    return kanazawa_conv2d(x, kernel, bias, self.scales, impl=self.impl, precision=self.precision,
                           padding=self.padding)
