"""NNX twins of the SESN layers (`stir_jax.layers.SESConvZ2H`, `SESConvHH`, `SESConvHH1x1`)."""
from __future__ import annotations

from typing import Optional, Union

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np

from stir_jax.layers.dtypes import DEFAULT_PRECISION, Dtype, PrecisionLike, promote_dtype
from stir_jax.layers.initializers import torch_uniform
from stir_jax.layers.sesn import sesn_basis_for, sesn_conv1x1, sesn_lift, sesn_scale_conv
from stir_jax.nnx._common import Constant, check_channels


class SESConvZ2H(nnx.Module):
  """SESN lifting layer (`stir_jax.layers.sesn_lift`): (B, H, W, in_features) ->
  (B, S, H', W', out_features), ``H' = H + 2 padding - size + 1``.

  Parameters in the reference layout (as the Linen module): ``weight`` (out_features,
  in_features, F), ``U(+-1/sqrt(in_features F))``; ``bias`` (out_features,), zeros, with
  ``use_bias``. The basis (F, S, size, size) is a constant, not state (``self.basis``).

  Args:
    in_features, out_features: input and output channels.
    basis: "hermite", "disco" (`sesn_basis_for` with kernel_size) or an (F, S, size, size) array.
    kernel_size: effective kernel size of a named basis.
    padding: spatial zero padding on every side (0: valid).
    use_bias: whether the layer has (and adds) ``bias``.
    impl, dtype, param_dtype, precision: as the Linen module.
    rngs: draws the weight.
  """

  def __init__(self, in_features: int, out_features: int, *,
               basis: Union[str, np.ndarray] = "hermite", kernel_size: int = 7,
               padding: Union[int, str] = 0, use_bias: bool = True, impl: str = "auto",
               dtype: Optional[Dtype] = None, param_dtype: Dtype = jnp.float32,
               precision: PrecisionLike = DEFAULT_PRECISION, rngs: nnx.Rngs):
    self._basis = Constant(sesn_basis_for(basis, kernel_size) if isinstance(basis, str)
                           else np.asarray(basis))
    shape = self._weight_shape(in_features, out_features, self.basis.shape[0])
    init = torch_uniform(int(np.prod(shape[1:])))
    self.weight = nnx.Param(init(rngs.params(), shape, param_dtype))
    if use_bias:
      self.bias = nnx.Param(jnp.zeros((out_features,), param_dtype))
    self.in_features = in_features
    self.out_features = out_features
    self.kernel_size = kernel_size
    self.padding = padding
    self.use_bias = use_bias
    self.impl = impl
    self.dtype = dtype
    self.param_dtype = param_dtype
    self.precision = precision

  @property
  def basis(self) -> np.ndarray:
    """The (F, S, size, size) basis, read-only."""
    return self._basis.array

  def _weight_shape(self, in_features: int, out_features: int, num_funcs: int) -> tuple:
    return (out_features, in_features, num_funcs)

  def _conv(self, x, weight, bias):
    return sesn_lift(x, weight, bias, self.basis, impl=self.impl, precision=self.precision,
                     padding=self.padding)

  def __call__(self, x: jax.Array) -> jax.Array:
    check_channels(type(self).__name__, x, self.in_features)
    bias = self.bias[...] if self.use_bias else None
    x, weight, bias = promote_dtype(x, self.weight[...], bias, dtype=self.dtype)
    return self._conv(x, weight, bias)


class SESConvHH(SESConvZ2H):
  """SESN scale-to-scale layer (`stir_jax.layers.sesn_scale_conv`): (B, S, H, W, in_features) ->
  (B, S, H', W', out_features).

  Parameters: ``weight`` (out_features, in_features, scale_size, F),
  ``U(+-1/sqrt(in_features scale_size F))``; ``bias`` as `SESConvZ2H`.

  Args: as `SESConvZ2H`, and ``scale_size``: the scale filter size J (1: no mixing across scales;
  output scale s reads input scales s .. s + J - 1, zero beyond the last).
  """

  def __init__(self, in_features: int, out_features: int, *, scale_size: int = 1, **kwargs):
    self.scale_size = scale_size  # read by _weight_shape
    super().__init__(in_features, out_features, **kwargs)

  def _weight_shape(self, in_features: int, out_features: int, num_funcs: int) -> tuple:
    return (out_features, in_features, self.scale_size, num_funcs)

  def _conv(self, x, weight, bias):
    return sesn_scale_conv(x, weight, bias, self.basis, impl=self.impl, precision=self.precision,
                           padding=self.padding)


class SESConvHH1x1(nnx.Module):
  """SESN 1x1 scale-to-scale layer (`stir_jax.layers.sesn_conv1x1`): (B, S, H, W, in_features) ->
  (B, S, H, W, out_features).

  ``weight`` (out_features, in_features, 1, 1), ``U(+-1/sqrt(in_features))``. ``bias``
  (out_features,), same init, exists (with ``use_bias``) as in the reference but is never added
  (see the Linen `SESConvHH1x1`).

  Args:
    in_features, out_features: input and output channels.
    use_bias: create the unused ``bias``.
    dtype, param_dtype, precision: as the Linen module.
    rngs: draws the parameters.
  """

  def __init__(self, in_features: int, out_features: int, *, use_bias: bool = True,
               dtype: Optional[Dtype] = None, param_dtype: Dtype = jnp.float32,
               precision: PrecisionLike = DEFAULT_PRECISION, rngs: nnx.Rngs):
    init = torch_uniform(in_features)
    self.weight = nnx.Param(init(rngs.params(), (out_features, in_features, 1, 1), param_dtype))
    if use_bias:  # created, never added
      self.bias = nnx.Param(init(rngs.params(), (out_features,), param_dtype))
    self.in_features = in_features
    self.out_features = out_features
    self.use_bias = use_bias
    self.dtype = dtype
    self.param_dtype = param_dtype
    self.precision = precision

  def __call__(self, x: jax.Array) -> jax.Array:
    check_channels("SESConvHH1x1", x, self.in_features)
    x, weight = promote_dtype(x, self.weight[...], dtype=self.dtype)
    return sesn_conv1x1(x, weight, precision=self.precision)
