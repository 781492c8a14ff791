"""The dtype and precision policy of every layer and model (flax.linen.Conv's meanings).

* ``dtype`` (modules): the computation dtype. None infers it from the inputs and parameters by
  JAX's type promotion (`flax.linen.dtypes.promote_dtype`), as flax does: float32 parameters and
  bfloat16 inputs compute in float32. Give ``dtype=jnp.bfloat16`` for mixed precision.
* ``param_dtype`` (modules): the dtype parameters are stored and initialised in (float32).
* ``precision``: `jax.lax.Precision`, a string (``"highest"``, ``"high"``, ``"default"``, or
  ``"float32"``, ``"tensorfloat32"``, ``"bfloat16"``) or None, passed to every convolution, matmul
  and einsum. The default of every layer and model is ``"highest"``: float32 operands compute with
  float32 products on CPU and GPU (no TF32) and in six bfloat16 passes on TPU (about float32
  accuracy, not bit-exact IEEE float32), so the parity tests and the paper's timing ratios do not
  depend on the hardware. ``"high"``: TF32 on recent GPUs, three bfloat16 passes on TPU.
  ``"default"`` (or None, as in lax) lets the backend choose, for speed (TF32 on GPUs, one bfloat16
  pass on TPUs). CPUs compute float32 products at every setting. ``precision`` also picks the
  form of ``impl="auto"`` (`stir_jax.layers.forms`): on TPU no FFT form is ever taken, because
  XLA's TPU FFT ignores precision (jax issue 9881). docs/precision.md has the whole table.

Pure functions take ``precision`` and compute in the promoted dtype of their array arguments.

Numerics that need float32 run in at least float32 inside and cast the result back to the
computation dtype: the FFT forms (`conv.conv2d_fft`, `conv.conv3d` with impl="fft",
`siconv_fft`; their DFT matmuls always use HIGHEST, being part of the transform), the
soft/energy reductions of `scale_pool`, the sampling coordinates of `resample.affine_warp` and the
L1 renormalisation of `xu.xu_kernels`.
"""
from __future__ import annotations

from typing import Any, Optional, Union

from flax.linen.dtypes import promote_dtype
import jax.numpy as jnp
from jax import lax

PrecisionLike = Union[None, str, lax.Precision, tuple]
Dtype = Any

#: The default ``precision`` of every layer and model: float32 products (CPU, GPU), six bfloat16
#: passes (TPU).
DEFAULT_PRECISION = "highest"

__all__ = ["DEFAULT_PRECISION", "PrecisionLike", "canonical_dtype", "canonical_precision",
           "float32_inside", "promote_dtype"]


def canonical_precision(precision: PrecisionLike) -> Optional[Union[lax.Precision, tuple]]:
  """``precision`` as lax takes it: a string (any case) becomes a `lax.Precision`, a pair of
  them stays a pair, a Precision or None is returned unchanged.

  >>> canonical_precision("HIGHEST")
  <Precision.HIGHEST: 2>
  """
  if isinstance(precision, str):
    try:
      return lax.Precision(precision.lower())
    except ValueError:
      raise ValueError(f"unknown precision {precision!r}; valid: highest, high, default, "
                       "float32, tensorfloat32, bfloat16") from None
  if isinstance(precision, tuple):
    return tuple(canonical_precision(p) for p in precision)
  if precision is None or isinstance(precision, lax.Precision):
    return precision
  raise TypeError(f"precision must be a lax.Precision, a string or None, got {precision!r}")


def canonical_dtype(dtype: Optional[Dtype]) -> Optional[jnp.dtype]:
  """None, or ``dtype`` (a string such as ``"bfloat16"`` or a dtype) as a numpy dtype; only
  floating dtypes are computation dtypes."""
  if dtype is None:
    return None
  dt = jnp.dtype(dtype)
  if not jnp.issubdtype(dt, jnp.floating):
    raise ValueError(f"dtype must be a floating dtype, got {dt}")
  return dt


def float32_inside(dtype: Dtype) -> jnp.dtype:
  """The dtype float32-sensitive numerics run in: float32 for 16-bit floats, else ``dtype``."""
  return jnp.promote_types(dtype, jnp.float32)
