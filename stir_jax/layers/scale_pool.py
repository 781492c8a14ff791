"""Scale pooling: removing the scale axis of a ``SiConv2d`` output.

Input ``y`` is (B, S, H, W, C) with the scale axis at position 1. Modes:

* ``pixel``: maximum over scales independently at every (b, h, w, c); indices (B, H, W, C).
* ``slice``: per (b, c), the scale holding the single largest activation over the whole
  (S, H, W) block (first position in row-major (s, h, w) order wins a tie, i.e. the lowest
  scale); that whole H x W slice is returned; indices (B, C).
* ``energy``: per (b, c), the scale whose slice has the largest sum over (H, W); that slice is
  returned; indices (B, C).
* ``soft`` (beyond the paper): a softmax over scales at every pixel with a temperature, the
  weighted sum of the scales is returned; indices are the per-pixel argmax, as for ``pixel``.

Ties go to the lowest scale index (``jnp.argmax``), as in the reference. The soft mixture and the
energy sums are computed in float32 (at least) and the result cast back to y's dtype.

Invariance: a translation of the input commutes with every mode (on the valid region). Pixel
pooling makes the output approximately invariant to the object's scale within the range of covered
kernel sizes (exactly only if rescaling the image matched rescaling the kernel); slice and energy
pooling select one scale per channel, so their output is approximately a (resampled) copy of the
response at the matching scale.
"""
from __future__ import annotations

from typing import Optional, Union

import flax.linen as nn
import jax
import jax.numpy as jnp

from stir_jax.layers.dtypes import DEFAULT_PRECISION, Dtype, PrecisionLike, float32_inside
from stir_jax.layers.dtypes import promote_dtype

POOL_MODES = ("pixel", "slice", "energy", "soft")


def _take_slice(y: jax.Array, indices: jax.Array) -> jax.Array:
  """y (B, S, H, W, C), indices (B, C) -> (B, H, W, C): y[b, indices[b, c], :, :, c]."""
  idx = indices[:, None, None, None, :]  # (B, 1, 1, 1, C)
  return jnp.take_along_axis(y, idx, axis=1)[:, 0]


def scale_pool(y: jax.Array, mode: str,
               temperature: Optional[Union[float, jax.Array]] = None
               ) -> tuple[jax.Array, jax.Array]:
  """Pools the scale axis of a scale-stacked feature map.

  Args:
    y: (B, S, H, W, C).
    mode: one of ``POOL_MODES``.
    temperature: softmax temperature for ``soft`` (a positive scalar, default 1.0); must be None
      for the other modes.

  Returns:
    ``(pooled, indices)``: pooled (B, H, W, C); indices int32, (B, H, W, C) for pixel and soft,
    (B, C) for slice and energy (the chosen scale index).

  Raises:
    ValueError: unknown mode, a temperature given for a mode without one, or a bad input rank.
  """
  if mode not in POOL_MODES:
    raise ValueError(f"unknown scale pooling mode {mode!r}; valid modes are {POOL_MODES}")
  if y.ndim != 5:
    raise ValueError(f"y must be (B, S, H, W, C), got shape {y.shape}")
  if temperature is not None and mode != "soft":
    raise ValueError(f"temperature is only used by mode 'soft', not {mode!r}")

  if mode == "pixel":
    indices = jnp.argmax(y, axis=1).astype(jnp.int32)  # (B, H, W, C)
    pooled = jnp.take_along_axis(y, indices[:, None], axis=1)[:, 0]
    return pooled, indices

  if mode == "soft":
    temp = 1.0 if temperature is None else temperature
    y32 = y.astype(float32_inside(y.dtype))
    weights = jax.nn.softmax(y32 / temp, axis=1)
    pooled = jnp.sum(weights * y32, axis=1).astype(y.dtype)
    indices = jnp.argmax(y, axis=1).astype(jnp.int32)
    return pooled, indices

  b, s, h, w, c = y.shape
  if mode == "slice":
    # Argmax over the flattened (s, h, w) block; row-major order makes the first occurrence the
    # lowest scale index, then the lowest (h, w).
    flat = jnp.moveaxis(y, 4, 1).reshape(b, c, s * h * w)
    indices = (jnp.argmax(flat, axis=-1) // (h * w)).astype(jnp.int32)  # (B, C)
  else:  # energy
    energy = jnp.sum(y, axis=(2, 3), dtype=float32_inside(y.dtype))
    indices = jnp.argmax(energy, axis=1).astype(jnp.int32)  # (B, C)
  return _take_slice(y, indices), indices


class ScalePool(nn.Module):
  """Scale pooling layer: (B, S, H, W, C) -> ((B, H, W, C), indices).

  See ``scale_pool`` for the modes. Translation equivariant; pixel pooling makes the output
  approximately invariant to the object's scale within the covered kernel sizes.

  Attributes:
    mode: one of ``POOL_MODES``.
    learnable_temperature: for ``soft`` only, learn ``log_temperature`` (a scalar param
      initialised to 0, i.e. temperature 1). Otherwise the temperature is 1.
    dtype: computation dtype (None: y's dtype promoted with the temperature's).
    param_dtype: dtype of ``log_temperature`` (float32).
    precision: accepted for the uniform layer signature; pooling has no matmul.
  """
  mode: str
  learnable_temperature: bool = False
  dtype: Optional[Dtype] = None
  param_dtype: Dtype = jnp.float32
  precision: PrecisionLike = DEFAULT_PRECISION

  @nn.compact
  def __call__(self, y: jax.Array) -> tuple[jax.Array, jax.Array]:
    if self.mode not in POOL_MODES:
      raise ValueError(f"unknown scale pooling mode {self.mode!r}; valid modes are {POOL_MODES}")
    if self.learnable_temperature and self.mode != "soft":
      raise ValueError("learnable_temperature is only meaningful for mode 'soft'")
    temperature = None
    if self.mode == "soft" and self.learnable_temperature:
      log_t = self.param("log_temperature", nn.initializers.zeros_init(), (), self.param_dtype)
      y, log_t = promote_dtype(y, log_t, dtype=self.dtype)
      temperature = jnp.exp(log_t)
    else:
      y, = promote_dtype(y, dtype=self.dtype)
    return scale_pool(y, self.mode, temperature)
