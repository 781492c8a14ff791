"""Scale-equivariant steerable convolutions (SESN: Sosnovik, Szmaja, Smeulders, "Scale-Equivariant
Steerable Networks", ICLR 2020), with the Hermite ("A", "B") or DISCO basis: the lifting layer
(Z2 -> H), the scale-to-scale layer (H -> H, any scale filter size) and the 1x1 H -> H layer.

Each kernel is a trained combination of ``F`` fixed basis functions given at ``S`` scales
(`stir_jax.layers.sesn_basis`): the kernel at scale s is ``sum_f weight[..., f] * basis[f, s]``.

* `sesn_lift` (Z2 -> H): correlates the image with the kernel at every scale, adding a scale axis.
* `sesn_scale_conv` (H -> H): output scale s sums, over the scale filter taps j < J, input scale
  s + j correlated with the kernel from ``weight[:, :, j]`` at scale s (the scale axis zero-padded
  at its end). J = 1 (the STIR hermite/disco models, the MNIST-scale SESN models) does not mix
  scales.
* `sesn_conv1x1` (H -> H): a 1x1 convolution shared by all scales.

Behaviour reproduced from the authors' code, ISosnovik/sesn (commit deaa16c), ``models/impl/
ses_conv.py`` classes ``SESConv_Z2_H``, ``SESConv_H_H`` and ``SESConv_H_H_1x1``, and checked against
their outputs and gradients (tests/fixtures/peers: sesn_z2h_A/B, sesn_hh_A/B, sesn_hh_B_ss1,
sesn_hh_1x1; tests/layers/test_sesn.py).

Equivariance: upscaling the input by ``scales[s+1] / scales[s]`` approximately upscales the maps and
shifts the scale axis by one towards larger scales (up to the ends of the finite scale axis and the
image border). With the Hermite basis the equivariance is limited by sampling and truncating
continuous functions; the DISCO basis was optimised to make it as exact as possible on the pixel
grid. Exactly equivariant to integer translations (valid region).

Parameters keep the reference layout: lifting ``weight`` (out, in, F), scale-to-scale ``weight``
(out, in, J, F), zero-initialised ``bias`` (out,); the 1x1 layer's ``weight`` (out, in, 1, 1).
Bases are constants, not parameters.

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
  """HWIO kernels of weight (O, C, J, F) at every scale: (size, size, J * C, S * O), with input
  channel j * C + c and output channel s * O + o (``sum_f weight[o, c, j, f] basis[f, s]``)."""
  _, num_scales, size, _ = basis.shape
  o, c, j, _ = weight.shape
  kernel = jnp.einsum("ocjf,fshw->hwjcso", weight, jnp.asarray(basis, weight.dtype),
                      precision=canonical_precision(precision))
  return kernel.reshape(size, size, j * c, num_scales * o)


def _add_bias(y, bias):
  return y if bias is None else y + bias


def sesn_lift(x: jax.Array, weight: jax.Array, bias: Optional[jax.Array], basis: np.ndarray,
              impl: str = "auto", precision: PrecisionLike = DEFAULT_PRECISION, *,
              padding: Union[int, str] = 0) -> jax.Array:
  """Steerable convolution from images to scale-space maps (Z2 -> H): ``SESConv_Z2_H``.

  Scale s of the output is the correlation of x with ``K_s[o, c] = sum_f weight[o, c, f]
  basis[f, s]``, plus the bias (shared by all scales).

  Args:
    x: ``(batch, H, W, in)``.
    weight: ``(out, in, F)``.
    bias: ``(out,)``, shared by all scales, or None.
    basis: ``(F, S, size, size)`` (e.g. `sesn_basis_for`, `hermite_basis_a`).
    impl: convolution algorithm, see `stir_jax.layers.conv.conv2d`.
    precision: of the kernel synthesis and the convolution.
    padding: zero padding on every side (int; 0 = "VALID"), or "VALID"/"SAME".

  Returns:
    ``(batch, S, H', W', out)`` (``H' = H + 2 padding - size + 1``), the promoted dtype of x,
    weight and bias.
  """
  x, weight, bias = promote_dtype(x, weight, bias)
  num_scales, o = basis.shape[1], weight.shape[0]
  y = conv2d(x, _kernels(weight[:, :, None], basis, precision), padding=padding, impl=impl,
             precision=precision)
  b, h, w, _ = y.shape
  return _add_bias(y.reshape(b, h, w, num_scales, o).transpose(0, 3, 1, 2, 4), bias)


def sesn_scale_conv(x: jax.Array, weight: jax.Array, bias: Optional[jax.Array],
                    basis: np.ndarray, impl: str = "auto",
                    precision: PrecisionLike = DEFAULT_PRECISION, *,
                    padding: Union[int, str] = 0) -> jax.Array:
  """Steerable convolution on scale-space maps (H -> H): ``SESConv_H_H``.

  With ``J = weight.shape[2]`` (the scale filter size), output scale s is
  ``sum_{j < J} corr(x[:, s + j], K_{s, j}) + bias`` with
  ``K_{s, j}[o, c] = sum_f weight[o, c, j, f] basis[f, s]``: the kernel is always built at the
  *output* scale s, and the input's scale axis is zero-padded at its end by ``J - 1`` (so the top
  scales see fewer input scales). ``J = 1`` treats every scale slice independently. One grouped
  convolution, a group per output scale.

  Args:
    x: ``(batch, S, H, W, in)``.
    weight: ``(out, in, J, F)``.
    bias: ``(out,)`` or None.
    basis: ``(F, S, size, size)``.
    impl: convolution algorithm, see `stir_jax.layers.conv.conv2d` (auto: FFT on CPU, grouped).
    precision: of the kernel synthesis and the convolution.
    padding: spatial zero padding on every side (int; 0 = "VALID"), or "VALID"/"SAME".

  Returns:
    ``(batch, S, H', W', out)`` (``H' = H + 2 padding - size + 1``), the promoted dtype of x,
    weight and bias.
  """
  x, weight, bias = promote_dtype(x, weight, bias)
  num_scales, o, scale_size = basis.shape[1], weight.shape[0], weight.shape[2]
  b, s, h, w, c = x.shape
  if s != num_scales:
    raise ValueError(f"input has {s} scales, the basis {num_scales}")
  if scale_size > 1:
    padded = jnp.pad(x, ((0, 0), (0, scale_size - 1), (0, 0), (0, 0), (0, 0)))
    x = jnp.stack([padded[:, j:j + s] for j in range(scale_size)], axis=2)
  else:
    x = x[:, :, None]
  # (b, S, J, h, w, c) -> (b, h, w, S * J * c): group s holds the channels (j, c) of scale s + j.
  x = x.transpose(0, 3, 4, 1, 2, 5).reshape(b, h, w, s * scale_size * c)
  y = conv2d(x, _kernels(weight, basis, precision), padding=padding, impl=impl,
             feature_group_count=num_scales, precision=precision)
  _, ho, wo, _ = y.shape
  return _add_bias(y.reshape(b, ho, wo, num_scales, o).transpose(0, 3, 1, 2, 4), bias)


def sesn_conv1x1(x: jax.Array, weight: jax.Array,
                 precision: PrecisionLike = DEFAULT_PRECISION) -> jax.Array:
  """1x1 convolution on scale-space maps, shared by all scales: ``SESConv_H_H_1x1``.

  ``y[b, s, h, w, o] = sum_c weight[o, c, 0, 0] x[b, s, h, w, c]``. The reference layer owns a
  bias but never adds it (see `SESConvHH1x1`); neither does this function.

  Args:
    x: ``(batch, S, H, W, in)``.
    weight: ``(out, in, 1, 1)`` (PyTorch's Conv2d layout).
    precision: of the contraction.

  Returns:
    ``(batch, S, H, W, out)``, the promoted dtype of x and weight.
  """
  x, weight = promote_dtype(x, weight)
  return jnp.einsum("bshwc,oc->bshwo", x, weight[:, :, 0, 0],
                    precision=canonical_precision(precision))


def _resolve_basis(basis, kernel_size) -> np.ndarray:
  return sesn_basis_for(basis, kernel_size) if isinstance(basis, str) else np.asarray(basis)


class SESConvZ2H(nn.Module):
  """Lifting layer over `sesn_lift`: ``(B, H, W, C) -> (B, S, H', W', features)``.

  Parameters (reference layout): ``weight`` (features, C, F), kaiming-uniform as PyTorch
  (``U(+-1/sqrt(C F))``), and ``bias`` (features,), zero-initialised (when ``use_bias``).

  Attributes:
    features: output channels.
    basis: "hermite", "disco" (`sesn_basis_for` with ``kernel_size``) or a ``(F, S, size, size)``
      array (e.g. `hermite_basis_a`, `hermite_basis`).
    kernel_size: effective kernel size of a named basis (its support is ``2 kernel_size + 1``).
    padding: spatial zero padding on every side (0: valid).
    use_bias: whether the layer has (and adds) ``bias``.
    impl: convolution algorithm, see `stir_jax.layers.conv.conv2d`.
    dtype, param_dtype, precision: as flax.linen.Conv (precision default "highest").
  """
  features: int
  basis: Union[str, np.ndarray] = "hermite"
  kernel_size: int = 7
  padding: Union[int, str] = 0
  use_bias: bool = True
  impl: str = "auto"
  dtype: Optional[Dtype] = None
  param_dtype: Dtype = jnp.float32
  precision: PrecisionLike = DEFAULT_PRECISION

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    basis = _resolve_basis(self.basis, self.kernel_size)
    num_funcs, c = basis.shape[0], x.shape[-1]
    shape = self._weight_shape(c, num_funcs)
    weight = self.param("weight", torch_uniform(int(np.prod(shape[1:]))), shape,
                        self.param_dtype)
    bias = (self.param("bias", nn.initializers.zeros, (self.features,), self.param_dtype)
            if self.use_bias else None)
    x, weight, bias = promote_dtype(x, weight, bias, dtype=self.dtype)
    return self._conv(x, weight, bias, basis)

  def _weight_shape(self, channels: int, num_funcs: int) -> tuple[int, ...]:
    return (self.features, channels, num_funcs)

  def _conv(self, x, weight, bias, basis):
    return sesn_lift(x, weight, bias, basis, self.impl, self.precision, padding=self.padding)


class SESConvHH(SESConvZ2H):
  """Scale-to-scale layer over `sesn_scale_conv`: ``(B, S, H, W, C) -> (B, S, H', W', features)``.

  Parameters: ``weight`` (features, C, scale_size, F), ``U(+-1/sqrt(C scale_size F))``; ``bias``
  as `SESConvZ2H`.

  Attributes: as `SESConvZ2H`, and
    scale_size: scale filter size ``J`` (1: no mixing across scales; J > 1: output scale s reads
      input scales s .. s + J - 1, zero beyond the last).
  """
  scale_size: int = 1

  def _weight_shape(self, channels: int, num_funcs: int) -> tuple[int, ...]:
    return (self.features, channels, self.scale_size, num_funcs)

  def _conv(self, x, weight, bias, basis):
    return sesn_scale_conv(x, weight, bias, basis, self.impl, self.precision,
                           padding=self.padding)


class SESConvHH1x1(nn.Module):
  """1x1 scale-to-scale layer over `sesn_conv1x1`: ``(B, S, H, W, C) -> (B, S, H, W, features)``.

  ``weight`` (features, C, 1, 1) is PyTorch's Conv2d layout and init (``U(+-1/sqrt(C))``).
  ``bias`` (features,) mirrors the reference ``SESConv_H_H_1x1``, an ``nn.Conv2d`` subclass whose
  forward pass never adds its bias: the parameter exists so that reference state dicts convert
  one to one, it is never used, and its gradient is zero (as in the reference). ``use_bias=False``
  drops it.

  Attributes:
    features: output channels.
    use_bias: create the (unused) ``bias`` parameter.
    dtype, param_dtype, precision: as flax.linen.Conv (precision default "highest").
  """
  features: int
  use_bias: bool = True
  dtype: Optional[Dtype] = None
  param_dtype: Dtype = jnp.float32
  precision: PrecisionLike = DEFAULT_PRECISION

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    c = x.shape[-1]
    weight = self.param("weight", torch_uniform(c), (self.features, c, 1, 1), self.param_dtype)
    if self.use_bias:  # created, never added (see the class docstring)
      self.param("bias", torch_uniform(c), (self.features,), self.param_dtype)
    x, weight = promote_dtype(x, weight, dtype=self.dtype)
    return sesn_conv1x1(x, weight, self.precision)
