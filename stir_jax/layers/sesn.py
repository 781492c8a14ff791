"""Scale-equivariant steerable convolutions (SESN, Sosnovik et al. 2020), with the Hermite or DISCO
basis: the lifting layer (Z2 -> H) and the scale-to-scale layer (H -> H, scale filter size 1).

Each kernel is a trained combination of ``F`` fixed basis functions given at ``S`` scales
(`stir_jax.layers.sesn_basis`): the kernel at scale s is ``sum_f weight[..., f] * basis[f, s]``.

* `sesn_lift` (Z2 -> H): correlates the image with the kernel at every scale, adding a scale axis.
* `sesn_scale_conv` (H -> H): correlates scale slice s with the kernel at scale s (no mixing across
  scales).

Equivariance: upscaling the input by ``scales[s+1] / scales[s]`` approximately upscales the maps and
shifts the scale axis by one towards larger scales (up to the ends of the finite scale axis and the
image border). With the Hermite basis the equivariance is limited by sampling and truncating
continuous functions; the DISCO basis was optimised to make it as exact as possible on the pixel
grid. Exactly equivariant to integer translations (valid region).

Parameters keep the reference layout: lifting ``weight`` (out, in, F), scale-to-scale ``weight``
(out, in, 1, F), zero-initialised ``bias`` (out,). Bases are constants, not parameters.

>>> basis = sesn_basis_for("disco")                      # (49, 4, 15, 15)
>>> y = sesn_lift(jnp.zeros((2, 64, 64, 1)), jnp.zeros((16, 1, 49)), jnp.zeros(16), basis)
>>> y.shape                                              # (batch, scale, H, W, out)
(2, 4, 50, 50, 16)
"""
from __future__ import annotations

from typing import Optional, Union

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from stir_jax.layers import sesn_basis
from stir_jax.layers.conv import conv2d
from stir_jax.layers.dtypes import DEFAULT_PRECISION, Dtype, PrecisionLike, canonical_precision
from stir_jax.layers.dtypes import promote_dtype
from stir_jax.layers.initializers import torch_uniform

BASES = ("hermite", "disco")


def sesn_basis_for(name: str, kernel_size: int = 7) -> np.ndarray:
  """The basis of the paper's SESN models, (kernel_size**2, 4, 2 kernel_size + 1, same), float32.

  "hermite": Hermite basis "B", scales (2, 2.52, 3.17, 4), mult 1.5, max order 4.
  "disco": DISCO basis "B", scales (1, 1.26, 1.59, 2), mixing Hermite functions with min scale 1.9,
  mult 1.9, max order 4 (only kernel_size 7 is shipped).
  """
  size = 2 * kernel_size + 1
  if name == "hermite":
    return sesn_basis.hermite_basis(size=size, scales=sesn_basis.HERMITE_SCALES,
                                    effective_size=kernel_size, mult=1.5, max_order=4)
  if name == "disco":
    return sesn_basis.disco_basis(size=size, scales=sesn_basis.DISCO_SCALES,
                                  effective_size=kernel_size, mult=1.9, max_order=4, min_scale=1.9)
  raise ValueError(f"unknown SESN basis {name!r}; valid: {', '.join(BASES)} or an array")


def _kernels(weight, basis, precision):
  """HWIO kernels (size, size, C, S * O) of weight (O, C, F) at every scale; channel s * O + o."""
  num_funcs, num_scales, size, _ = basis.shape
  o, c, _ = weight.shape
  kernel = jnp.einsum("ocf,fshw->hwcso", weight, jnp.asarray(basis, weight.dtype),
                      precision=canonical_precision(precision))
  return kernel.reshape(size, size, c, num_scales * o)


def sesn_lift(x: jax.Array, weight: jax.Array, bias: jax.Array, basis: np.ndarray,
              impl: str = "auto", precision: PrecisionLike = DEFAULT_PRECISION) -> jax.Array:
  """Steerable convolution from images to scale-space maps (Z2 -> H).

  Args:
    x: ``(batch, H, W, in)``.
    weight: ``(out, in, F)``.
    bias: ``(out,)``, shared by all scales.
    basis: ``(F, S, size, size)`` (e.g. `sesn_basis_for`).
    impl: convolution algorithm, see `stir_jax.layers.conv.conv2d`.
    precision: of the kernel synthesis and the convolution.

  Returns:
    ``(batch, S, H - size + 1, W - size + 1, out)``, the promoted dtype of x, weight and bias.
  """
  x, weight, bias = promote_dtype(x, weight, bias)
  num_scales, o = basis.shape[1], weight.shape[0]
  y = conv2d(x, _kernels(weight, basis, precision), impl=impl, precision=precision)
  b, h, w, _ = y.shape
  return y.reshape(b, h, w, num_scales, o).transpose(0, 3, 1, 2, 4) + bias


def sesn_scale_conv(x: jax.Array, weight: jax.Array, bias: jax.Array, basis: np.ndarray,
                    impl: str = "auto", precision: PrecisionLike = DEFAULT_PRECISION) -> jax.Array:
  """Steerable convolution on scale-space maps (H -> H) with scale filter size 1.

  Scale slice s is correlated (valid) with ``K[o, c, s] = sum_f weight[o, c, 0, f] basis[f, s]``;
  scales are not mixed (one grouped convolution, a group per scale).

  Args:
    x: ``(batch, S, H, W, in)``.
    weight: ``(out, in, 1, F)``.
    bias: ``(out,)``.
    basis: ``(F, S, size, size)``.
    impl: convolution algorithm, see `stir_jax.layers.conv.conv2d` (auto: FFT on CPU, grouped).
    precision: of the kernel synthesis and the convolution.

  Returns:
    ``(batch, S, H - size + 1, W - size + 1, out)``, the promoted dtype of x, weight and bias.
  """
  x, weight, bias = promote_dtype(x, weight, bias)
  num_scales, o = basis.shape[1], weight.shape[0]
  b, s, h, w, c = x.shape
  if s != num_scales:
    raise ValueError(f"input has {s} scales, the basis {num_scales}")
  x = x.transpose(0, 2, 3, 1, 4).reshape(b, h, w, s * c)
  y = conv2d(x, _kernels(weight[:, :, 0], basis, precision), impl=impl,
             feature_group_count=num_scales, precision=precision)
  _, ho, wo, _ = y.shape
  return y.reshape(b, ho, wo, num_scales, o).transpose(0, 3, 1, 2, 4) + bias


def _resolve_basis(basis, kernel_size) -> np.ndarray:
  return sesn_basis_for(basis, kernel_size) if isinstance(basis, str) else np.asarray(basis)


class SESConvZ2H(nn.Module):
  """Lifting layer over `sesn_lift`: ``(B, H, W, C) -> (B, S, H', W', features)``.

  Attributes:
    features: output channels.
    basis: "hermite", "disco" (`sesn_basis_for` with ``kernel_size``) or a ``(F, S, size, size)``
      array.
    kernel_size: effective kernel size of a named basis (its support is ``2 kernel_size + 1``).
    impl: convolution algorithm, see `stir_jax.layers.conv.conv2d`.
    dtype, param_dtype, precision: as flax.linen.Conv (precision default "highest").
  """
  features: int
  basis: Union[str, np.ndarray] = "hermite"
  kernel_size: int = 7
  impl: str = "auto"
  dtype: Optional[Dtype] = None
  param_dtype: Dtype = jnp.float32
  precision: PrecisionLike = DEFAULT_PRECISION

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    basis = _resolve_basis(self.basis, self.kernel_size)
    num_funcs, c = basis.shape[0], x.shape[-1]
    weight = self.param("weight", torch_uniform(c * num_funcs),
                        self._weight_shape(c, num_funcs), self.param_dtype)
    bias = self.param("bias", nn.initializers.zeros, (self.features,), self.param_dtype)
    x, weight, bias = promote_dtype(x, weight, bias, dtype=self.dtype)
    return self._conv(x, weight, bias, basis)

  def _weight_shape(self, channels: int, num_funcs: int) -> tuple[int, ...]:
    return (self.features, channels, num_funcs)

  def _conv(self, x, weight, bias, basis):
    return sesn_lift(x, weight, bias, basis, self.impl, self.precision)


class SESConvHH(SESConvZ2H):
  """Scale-to-scale layer over `sesn_scale_conv`: ``(B, S, H, W, C) -> (B, S, H', W', features)``.

  Attributes: as `SESConvZ2H`.
  """

  def _weight_shape(self, channels: int, num_funcs: int) -> tuple[int, ...]:
    return (self.features, channels, 1, num_funcs)

  def _conv(self, x, weight, bias, basis):
    return sesn_scale_conv(x, weight, bias, basis, self.impl, self.precision)
