"""NNX twins of the parameter-free resampling layers (`stir_jax.layers.GaussianPyramid`,
`AffineWarp`)."""
from __future__ import annotations

from typing import Optional

from flax import nnx
import jax
import jax.numpy as jnp

from stir_jax.layers.dtypes import DEFAULT_PRECISION, Dtype, PrecisionLike, promote_dtype
from stir_jax.layers.resample import affine_warp, gaussian_pyramid


class GaussianPyramid(nnx.Module):
  """`stir_jax.layers.gaussian_pyramid`: (B, H, W, C) -> a list of ``levels`` maps, level l of
  size H // 2**l (the input first). No parameters.

  Args:
    levels: number of levels, the input included.
    dtype: computation dtype (None: the input's).
    param_dtype, rngs: accepted for the uniform signature.
    precision: of the resizing matmuls.
  """

  def __init__(self, levels: int = 3, *, dtype: Optional[Dtype] = None,
               param_dtype: Dtype = jnp.float32, precision: PrecisionLike = DEFAULT_PRECISION,
               rngs: Optional[nnx.Rngs] = None):
    del rngs
    self.levels = levels
    self.dtype = dtype
    self.param_dtype = param_dtype
    self.precision = precision

  def __call__(self, x: jax.Array) -> list[jax.Array]:
    x, = promote_dtype(x, dtype=self.dtype)
    return gaussian_pyramid(x, self.levels, self.precision)


class AffineWarp(nnx.Module):
  """The spatial transformer's sampler (`stir_jax.layers.affine_warp`): ``(x (B, H, W, C), theta
  (B, 2, 3)) -> (B, H, W, C)``, x sampled bilinearly at ``theta @ (xn, yn, 1)``, zeros outside.
  No parameters.

  Args:
    dtype: computation dtype of the sampled values (None: x's); coordinates are float32.
    param_dtype, rngs: accepted for the uniform signature.
    precision: of the sampling grid's einsum.
  """

  def __init__(self, *, dtype: Optional[Dtype] = None, param_dtype: Dtype = jnp.float32,
               precision: PrecisionLike = DEFAULT_PRECISION, rngs: Optional[nnx.Rngs] = None):
    del rngs
    self.dtype = dtype
    self.param_dtype = param_dtype
    self.precision = precision

  def __call__(self, x: jax.Array, theta: jax.Array) -> jax.Array:
    x, = promote_dtype(x, dtype=self.dtype)
    return affine_warp(x, theta, self.precision)
