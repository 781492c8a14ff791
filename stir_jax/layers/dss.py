"""Deep Scale-Spaces (DSS: Worrall & Welling, "Deep Scale-spaces: Equivariance Over Scale",
NeurIPS 2019): the Bessel lifting to a discrete scale space and the dilated semigroup convolution.

* `dss_besselconv2d` (Z2 -> H, no parameters): scale 0 is the image itself, scale d >= 1 the image
  blurred separably with Lindeberg's discrete Gaussian ``T(n; t_d) = e^{-t_d} I_n(t_d)`` of
  variance ``t_d = zero_scale^2 (base^{2d} - 1)``, truncated to ``|n| <= 4 ceil(sqrt(t_d))``,
  renormalised to sum 1, with zero padding. An image of blur ``zero_scale`` so gets the blur
  ``zero_scale base^d`` at scale d: the scale space that dilating by ``base^d`` samples.
* `dss_dconv2d` (H -> H): output scale s correlates input scales ``s .. min(s + kS, S_out) - 1``
  (scale taps that would reach past the top of the scale axis are dropped, not padded) with the
  kernel's first scale taps, at spatial dilation ``int(base^s)`` and zero padding
  ``dilation * (k // 2)`` (same size), plus a bias per output channel, added once per output scale.

Behaviour reproduced from ISosnovik/sesn (commit deaa16c) ``models/impl/deep_scale_space.py``,
classes ``BesselConv2d`` and ``Dconv2d`` (Sosnovik et al.'s modified version of Worrall's
deworrall92/deep-scale-spaces), and checked against their outputs and gradients
(tests/fixtures/peers: dss_besselconv2d, dss_dconv2d; tests/layers/test_dss.py). The discrete
Gaussian comes from `stir_jax.layers.gaussian.discgauss_kernel` (exact, from its Fourier
transform; the reference uses scipy's ``ive``).

Equivariance: the lifting and the dilated convolution form a semigroup-equivariant pair. Downscaling
the input by ``base`` (with the matching blur) approximately shifts the scale axis by one towards
smaller indices: scale d + 1 of the original sees what scale d of the downscaled image sees, at
twice the dilation. Exact only for the discrete semigroup (integer dilations, the blur the
Bessel lifting adds), and lossy at the ends of the finite scale axis and the image border.
Exactly equivariant to integer translations (away from the border).

Layouts: images ``(B, H, W, C)``, scale-space maps ``(B, S, H, W, C)``. Parameters keep the
reference layout: ``weights`` (out, in, kS, kH, kW) (the reference's plural name) and ``bias``
(out,); He init (normal, std ``sqrt(2 / (kS kH kW in))``), bias 1, as the reference's ``init='he'``.

>>> y = dss_besselconv2d(jnp.zeros((2, 28, 28, 1)), num_scales=2, zero_scale=0.25)
>>> y.shape                                              # (batch, scale, H, W, C)
(2, 2, 28, 28, 1)
>>> dss_dconv2d(y, jnp.zeros((32, 1, 1, 7, 7)), None).shape
(2, 2, 28, 28, 32)
"""
from __future__ import annotations

import functools
import math
from typing import Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from stir_jax.layers.dtypes import DEFAULT_PRECISION, Dtype, PrecisionLike, canonical_precision
from stir_jax.layers.dtypes import promote_dtype
from stir_jax.layers.gaussian import discgauss_kernel

_DN = ("NHWC", "HWIO", "NHWC")


def bessel_variances(num_scales: int, base: float = 2.0, zero_scale: float = 0.5) -> np.ndarray:
  """Variances ``t_d = zero_scale^2 (base^{2d} - 1)`` of the blurs of scales d = 1 .. S - 1.

  >>> bessel_variances(4, base=2.0, zero_scale=0.25).tolist()
  [0.1875, 0.9375, 3.9375]
  """
  dilations = np.power(float(base), np.arange(1, num_scales))
  return zero_scale**2 * (dilations**2 - 1.0)


def bessel_widths(num_scales: int, base: float = 2.0, zero_scale: float = 0.5) -> tuple[int, ...]:
  """Half-widths ``4 ceil(sqrt(t_d))`` of the blur kernels of scales d = 1 .. S - 1."""
  return tuple(4 * int(math.ceil(math.sqrt(t)))
               for t in bessel_variances(num_scales, base, zero_scale))


@functools.lru_cache(maxsize=None)
def bessel_kernels(num_scales: int, base: float = 2.0,
                   zero_scale: float = 0.5) -> tuple[np.ndarray, ...]:
  """The 1-D blur kernels of scales d = 1 .. S - 1: ``(2 w_d + 1,)`` float32 each (read-only).

  Tap n (index n + w_d) is ``T(n; t_d) / sum_{|m| <= w_d} T(m; t_d)``, the discrete analogue of
  the Gaussian renormalised to sum 1 over its truncation (`bessel_variances`, `bessel_widths`).
  """
  kernels = []
  for t, w in zip(bessel_variances(num_scales, base, zero_scale),
                  bessel_widths(num_scales, base, zero_scale)):
    with jax.ensure_compile_time_eval():  # a constant, also when called under jit
      k = np.asarray(discgauss_kernel(math.sqrt(t), N=w), np.float64)
    k = (k / k.sum()).astype(np.float32)
    k.setflags(write=False)
    kernels.append(k)
  return tuple(kernels)


@functools.lru_cache(maxsize=None)
def _blur_matrices(n: int, num_scales: int, base: float, zero_scale: float) -> np.ndarray:
  """(S - 1, n, n): row i of matrix d holds kernel d's taps at columns i - w .. i + w, cut at the
  edges (correlation with zero padding along one axis of length n)."""
  mats = np.zeros((num_scales - 1, n, n), np.float32)
  for d, k in enumerate(bessel_kernels(num_scales, base, zero_scale)):
    w = (k.size - 1) // 2
    for offset in range(-w, w + 1):
      mats[d] += np.eye(n, k=offset, dtype=np.float32) * k[offset + w]
  mats.setflags(write=False)
  return mats


def dss_besselconv2d(x: jax.Array, num_scales: int, *, base: float = 2.0,
                     zero_scale: float = 0.5,
                     precision: PrecisionLike = DEFAULT_PRECISION) -> jax.Array:
  """Lifts images to a discrete Gaussian scale space (``BesselConv2d``).

  Scale 0 is ``x``; scale d >= 1 is ``x`` correlated along W and then along H with kernel d of
  `bessel_kernels` (zero padding, same size). Computed as two matrix products with banded
  matrices (`_blur_matrices`), exact up to float rounding.

  Args:
    x: ``(batch, H, W, C)``.
    num_scales: S, the scales of the output (1: ``x`` with a scale axis).
    base: scale factor between neighbouring scales.
    zero_scale: the blur (standard deviation) the input is assumed to have.
    precision: of the two matrix products.

  Returns:
    ``(batch, S, H, W, C)`` in x's dtype.
  """
  if num_scales < 1:
    raise ValueError(f"num_scales must be >= 1, got {num_scales}")
  if num_scales == 1:
    return x[:, None]
  _, h, w, _ = x.shape
  key = (int(num_scales), float(base), float(zero_scale))
  mh = jnp.asarray(_blur_matrices(h, *key), x.dtype)
  mw = jnp.asarray(_blur_matrices(w, *key), x.dtype)
  p = canonical_precision(precision)
  y = jnp.einsum("dvw,bhwc->bdhvc", mw, x, precision=p)       # along W first, as the reference
  y = jnp.einsum("duh,bdhvc->bduvc", mh, y, precision=p)      # then along H
  return jnp.concatenate([x[:, None], y], axis=1)


def dss_dilations(num_scales: int, base: float = 2) -> tuple[int, ...]:
  """Spatial dilations ``int(base^s)`` of scales s = 0 .. S - 1 (truncated to integers, as the
  reference does: use an integer base)."""
  return tuple(int(d) for d in np.power(base, np.arange(num_scales)))


def dss_dconv2d(x: jax.Array, weights: jax.Array, bias: Optional[jax.Array], base: float = 2,
                num_out_scales: Optional[int] = None,
                precision: PrecisionLike = DEFAULT_PRECISION) -> jax.Array:
  """Dilated semigroup convolution on scale-space maps (``Dconv2d``).

  Output scale s (< S_out) correlates the input scales ``s .. t - 1``, ``t = min(s + kS, S_out)``,
  stacked as channels, with ``weights[:, :, :t - s]`` at dilation ``int(base^s)`` and zero padding
  ``dilation * (k // 2)`` per side, then adds the bias.

  Args:
    x: ``(batch, S_in, H, W, in)``.
    weights: ``(out, in, kS, kH, kW)``.
    bias: ``(out,)`` or None.
    base: dilation base (an integer, or integral powers).
    num_out_scales: S_out (default S_in); the reference's ``io_scales = [S_out, S_in]``.
    precision: of the convolutions.

  Returns:
    ``(batch, S_out, H', W', out)`` (H' = H for odd kernels), the promoted dtype of x, weights
    and bias.
  """
  x, weights, bias = promote_dtype(x, weights, bias)
  b, s_in, h, w, c = x.shape
  o, c_w, k_s, k_h, k_w = weights.shape
  if c_w != c:
    raise ValueError(f"weights {weights.shape} expect {c_w} input channels, x has {c}")
  s_out = s_in if num_out_scales is None else int(num_out_scales)
  dilations = dss_dilations(s_in, base)
  p = canonical_precision(precision)
  outputs = []
  for s in range(s_out):
    t = min(s + k_s, s_out)
    xs = x[:, s:t].transpose(0, 2, 3, 1, 4).reshape(b, h, w, (t - s) * c)
    ks = weights[:, :, :t - s].transpose(3, 4, 2, 1, 0).reshape(k_h, k_w, (t - s) * c, o)
    d = dilations[s]
    y = jax.lax.conv_general_dilated(
        xs, ks, (1, 1), ((d * (k_h // 2),) * 2, (d * (k_w // 2),) * 2), rhs_dilation=(d, d),
        dimension_numbers=_DN, precision=p)
    outputs.append(y if bias is None else y + bias)
  return jnp.stack(outputs, axis=1)


class BesselConv2d(nn.Module):
  """The Bessel lifting over `dss_besselconv2d`: ``(B, H, W, C) -> (B, S, H, W, C)``; no
  parameters.

  Attributes:
    num_scales: S.
    base: scale factor between neighbouring scales.
    zero_scale: the input's assumed blur.
    dtype: computation dtype (None: x's).
    param_dtype: unused (no parameters); kept for the uniform layer signature.
    precision: of the blur's matrix products (default "highest").
  """
  num_scales: int
  base: float = 2.0
  zero_scale: float = 0.5
  dtype: Optional[Dtype] = None
  param_dtype: Dtype = jnp.float32
  precision: PrecisionLike = DEFAULT_PRECISION

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    (x,) = promote_dtype(x, dtype=self.dtype)
    return dss_besselconv2d(x, self.num_scales, base=self.base, zero_scale=self.zero_scale,
                            precision=self.precision)


def he_normal(fan_in: int):
  """The reference's ``init='he'``: normal with std ``sqrt(2 / fan_in)``."""
  std = math.sqrt(2.0 / fan_in)

  def init(key, shape, dtype=jnp.float32):
    return std * jax.random.normal(key, shape, dtype)

  return init


class Dconv2d(nn.Module):
  """The dilated semigroup convolution over `dss_dconv2d`:
  ``(B, S_in, H, W, C) -> (B, S_out, H, W, features)``.

  Parameters: ``weights`` (features, C, kS, kH, kW), He-normal; ``bias`` (features,), ones (only
  with ``use_bias``; the reference's default is no bias).

  Attributes:
    features: output channels.
    kernel_size: ``(kS, kH, kW)``: scale taps and the spatial kernel.
    base: dilation base.
    num_out_scales: S_out (None: S_in).
    use_bias: whether the layer has a bias.
    dtype, param_dtype, precision: as flax.linen.Conv (precision default "highest").
  """
  features: int
  kernel_size: Sequence[int] = (1, 7, 7)
  base: float = 2
  num_out_scales: Optional[int] = None
  use_bias: bool = False
  dtype: Optional[Dtype] = None
  param_dtype: Dtype = jnp.float32
  precision: PrecisionLike = DEFAULT_PRECISION

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    k_s, k_h, k_w = self.kernel_size
    c = x.shape[-1]
    weights = self.param("weights", he_normal(k_s * k_h * k_w * c),
                         (self.features, c, k_s, k_h, k_w), self.param_dtype)
    bias = (self.param("bias", nn.initializers.ones, (self.features,), self.param_dtype)
            if self.use_bias else None)
    x, weights, bias = promote_dtype(x, weights, bias, dtype=self.dtype)
    return dss_dconv2d(x, weights, bias, self.base, self.num_out_scales, self.precision)
