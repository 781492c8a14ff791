"""NNX twin of `stir_jax.layers.ScaleConvSteering` (SS-CNN, Ghosh & Gupta 2019)."""
from __future__ import annotations

from typing import Optional, Sequence

from flax import nnx
import jax
import jax.numpy as jnp

from stir_jax.layers.dtypes import DEFAULT_PRECISION, Dtype, PrecisionLike, promote_dtype
from stir_jax.layers.scale_steerable import BASIS_SCALE, K_RANGE, PHASE_RANGE, PHI_RANGE
from stir_jax.layers.scale_steerable import SIGMA_PHI_RANGE, SteerableBasis
from stir_jax.layers.scale_steerable import _coefficient_init  # the Linen module's init
from stir_jax.layers.scale_steerable import scale_steerable_conv2d, steerable_basis
from stir_jax.nnx._common import check_channels


def _floats(values: Sequence[float]) -> tuple[float, ...]:
  return tuple(float(v) for v in values)


class ScaleConvSteering(nnx.Module):
  """SS-CNN layer (`stir_jax.layers.scale_steerable_conv2d`): steered kernels of every size in
  ``kernel_sizes``, 'same' correlation, maximum over sizes, ReLU. (B, H, W, in_features) ->
  (B, H, W, out_features).

  Parameters ``mult_real`` and ``mult_imag`` (K, out_features, in_features, B), the reference's
  init (``U(+-sqrt(2 / (B in_features out_features)))``). The basis, on the grid
  ``max(kernel_sizes)``, is a cached constant (`basis()`).

  Args:
    in_features, out_features: input and output channels.
    kernel_size: nominal kernel size (size n is steered to scale n / kernel_size).
    kernel_sizes: odd kernel sizes the maximum runs over.
    k_range, phi_range, sigma_phi_range, phase_range, basis_scale: the basis (`steerable_basis`).
    relu: apply the ReLU after the maximum.
    impl, dtype, param_dtype, precision: as the Linen module.
    rngs: draws the coefficients.
  """

  def __init__(self, in_features: int, out_features: int, *, kernel_size: int = 7,
               kernel_sizes: Sequence[int] = (5, 7, 9, 11),
               k_range: Sequence[float] = K_RANGE, phi_range: Sequence[float] = PHI_RANGE,
               sigma_phi_range: Sequence[float] = SIGMA_PHI_RANGE,
               phase_range: Sequence[float] = PHASE_RANGE,
               basis_scale: Sequence[float] = BASIS_SCALE, relu: bool = True,
               impl: str = "auto", dtype: Optional[Dtype] = None,
               param_dtype: Dtype = jnp.float32, precision: PrecisionLike = DEFAULT_PRECISION,
               rngs: nnx.Rngs):
    self.in_features = in_features
    self.out_features = out_features
    self.kernel_size = kernel_size
    self.kernel_sizes = tuple(int(n) for n in kernel_sizes)
    self.k_range = _floats(k_range)
    self.phi_range = _floats(phi_range)
    self.sigma_phi_range = _floats(sigma_phi_range)
    self.phase_range = _floats(phase_range)
    self.basis_scale = _floats(basis_scale)
    self.relu = relu
    self.impl = impl
    self.dtype = dtype
    self.param_dtype = param_dtype
    self.precision = precision
    k, _, _, b = self.basis().real.shape
    shape = (k, out_features, in_features, b)
    init = _coefficient_init(b, out_features * in_features)
    self.mult_real = nnx.Param(init(rngs.params(), shape, param_dtype))
    self.mult_imag = nnx.Param(init(rngs.params(), shape, param_dtype))

  def basis(self) -> SteerableBasis:
    return steerable_basis(max(self.kernel_sizes), self.k_range, self.phi_range,
                           self.sigma_phi_range, self.phase_range, self.basis_scale)

  def __call__(self, x: jax.Array) -> jax.Array:
    check_channels("ScaleConvSteering", x, self.in_features)
    x, mult_real, mult_imag = promote_dtype(x, self.mult_real[...], self.mult_imag[...],
                                            dtype=self.dtype)
    return scale_steerable_conv2d(x, mult_real, mult_imag, self.basis(), self.kernel_sizes,
                                  self.kernel_size, relu=self.relu, impl=self.impl,
                                  precision=self.precision)
