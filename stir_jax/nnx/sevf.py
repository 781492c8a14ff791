"""NNX twins of the SEVF layers (`stir_jax.layers.SEVFScalarConv`, `SEVFVectorConv`,
`VectorMaxPool`, `VectorBatchNorm`)."""
from __future__ import annotations

from typing import Optional

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np

from stir_jax.layers.dtypes import DEFAULT_PRECISION, Dtype, PrecisionLike, float32_inside
from stir_jax.layers.dtypes import promote_dtype
from stir_jax.layers.initializers import torch_uniform
from stir_jax.layers.sevf import ANGLE_RANGE, BASE, N_SCALES_BIG, N_SCALES_SMALL
from stir_jax.layers.sevf import sevf_scalar_conv2d, sevf_scales, sevf_vector_conv2d
from stir_jax.layers.sevf import vector_magnitude, vector_max_pool
from stir_jax.nnx._common import check_channels, first


class SEVFScalarConv(nnx.Module):
  """SEVF scalar -> vector field layer (`stir_jax.layers.sevf_scalar_conv2d`): (B, H, H,
  in_features) -> ``(u, v)``, each (B, H', H', out_features), ``H' = H + 2 padding - k + 1``.

  Parameter ``kernel`` (k, k, in_features, out_features), PyTorch's init.

  Args:
    in_features, out_features: input and output channels.
    kernel_size: kernel side.
    padding: zero padding of each branch's correlation.
    n_scales_small, n_scales_big, base, angle_range: the branches (`sevf_scales`).
    impl, dtype, param_dtype, precision: as the Linen module.
    rngs: draws the kernel.
  """
  _KERNELS = ("kernel",)

  def __init__(self, in_features: int, out_features: int, *, kernel_size: int = 7,
               padding: int = 0, n_scales_small: int = N_SCALES_SMALL,
               n_scales_big: int = N_SCALES_BIG, base: float = BASE,
               angle_range: float = ANGLE_RANGE, impl: str = "auto",
               dtype: Optional[Dtype] = None, param_dtype: Dtype = jnp.float32,
               precision: PrecisionLike = DEFAULT_PRECISION, rngs: nnx.Rngs):
    k = kernel_size
    init = torch_uniform(in_features * k * k)
    for name in self._KERNELS:
      setattr(self, name, nnx.Param(init(rngs.params(), (k, k, in_features, out_features),
                                         param_dtype)))
    self.in_features = in_features
    self.out_features = out_features
    self.kernel_size = kernel_size
    self.padding = padding
    self.n_scales_small = n_scales_small
    self.n_scales_big = n_scales_big
    self.base = base
    self.angle_range = angle_range
    self.impl = impl
    self.dtype = dtype
    self.param_dtype = param_dtype
    self.precision = precision

  def scales_and_angles(self) -> tuple[np.ndarray, np.ndarray]:
    return sevf_scales(self.n_scales_small, self.n_scales_big, self.base, self.angle_range)

  def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    check_channels("SEVFScalarConv", x, self.in_features)
    x, kernel = promote_dtype(x, self.kernel[...], dtype=self.dtype)
    scales, angles = self.scales_and_angles()
    return sevf_scalar_conv2d(x, kernel, scales, angles, padding=self.padding, impl=self.impl,
                              precision=self.precision)


class SEVFVectorConv(SEVFScalarConv):
  """SEVF vector -> vector field layer (`stir_jax.layers.sevf_vector_conv2d`): ``(u, v) -> (u,
  v)``, shapes as `SEVFScalarConv`; parameters ``kernel_u`` and ``kernel_v`` (k, k, in_features,
  out_features), PyTorch's init.

  Args: as `SEVFScalarConv`.
  """
  _KERNELS = ("kernel_u", "kernel_v")

  def __call__(self, u: jax.Array, v: jax.Array) -> tuple[jax.Array, jax.Array]:  # pylint: disable=arguments-differ
    check_channels("SEVFVectorConv", u, self.in_features)
    u, v, kernel_u, kernel_v = promote_dtype(u, v, self.kernel_u[...], self.kernel_v[...],
                                             dtype=self.dtype)
    scales, angles = self.scales_and_angles()
    return sevf_vector_conv2d(u, v, kernel_u, kernel_v, scales, angles, padding=self.padding,
                              impl=self.impl, precision=self.precision)


class VectorMaxPool(nnx.Module):
  """`stir_jax.layers.vector_max_pool`: ``(u, v) -> (u, v)``, in each window x window window the
  vector of largest magnitude; (B, H, W, C) -> (B, (H + 2 padding) // window, same, C). No
  parameters.

  Args:
    window: window side and stride.
    padding: implicit padding on every side.
    dtype: computation dtype (None: u's and v's promoted dtype).
    param_dtype, precision, rngs: accepted for the uniform signature.
  """

  def __init__(self, window: int, *, padding: int = 0, dtype: Optional[Dtype] = None,
               param_dtype: Dtype = jnp.float32, precision: PrecisionLike = DEFAULT_PRECISION,
               rngs: Optional[nnx.Rngs] = None):
    del rngs
    self.window = window
    self.padding = padding
    self.dtype = dtype
    self.param_dtype = param_dtype
    self.precision = precision

  def __call__(self, u: jax.Array, v: jax.Array) -> tuple[jax.Array, jax.Array]:
    u, v = promote_dtype(u, v, dtype=self.dtype)
    return vector_max_pool(u, v, self.window, self.padding)


class VectorBatchNorm(nnx.Module):
  """SEVF's vector batch norm (the Linen `VectorBatchNorm`): u and v divided by ``sqrt(epsilon +
  var)``, var the per-channel variance of the magnitude ``sqrt(u**2 + v**2)`` over (B, H, W).

  With ``use_running_average`` var is the running variance ``running_var`` (an ``nnx.BatchStat``
  (num_features,), initialised to 1); without it, the biased batch variance, and ``running_var``
  becomes ``(1 - momentum) running_var + momentum var n / (n - 1)``, ``n = B H W``. As
  ``nnx.BatchNorm``: the call's ``use_running_average`` wins over the attribute, which
  ``model.train()`` sets to False, ``model.eval()`` and ``nnx.view(model,
  use_running_average=True)`` to True. Nothing is learned (no ``nnx.Param``).

  Args:
    num_features: channels C.
    epsilon: added to the variance.
    momentum: of the running variance (0.5, the reference's).
    use_running_average: the default mode (False: train, as nnx.BatchNorm).
    dtype: computation dtype (None: inferred); the variance is computed in float32 at least.
    param_dtype: dtype of ``running_var``.
    precision, rngs: accepted for the uniform signature.
  """

  def __init__(self, num_features: int, *, epsilon: float = 1e-5, momentum: float = 0.5,
               use_running_average: bool = False, dtype: Optional[Dtype] = None,
               param_dtype: Dtype = jnp.float32, precision: PrecisionLike = DEFAULT_PRECISION,
               rngs: Optional[nnx.Rngs] = None):
    del rngs
    self.running_var = nnx.BatchStat(jnp.ones((num_features,), param_dtype))
    self.num_features = num_features
    self.epsilon = epsilon
    self.momentum = momentum
    self.use_running_average = use_running_average
    self.dtype = dtype
    self.param_dtype = param_dtype
    self.precision = precision

  def set_view(self, use_running_average: Optional[bool] = None) -> None:
    """Used by ``nnx.view``."""
    if use_running_average is not None:
      self.use_running_average = use_running_average

  def __call__(self, u: jax.Array, v: jax.Array, use_running_average: Optional[bool] = None
               ) -> tuple[jax.Array, jax.Array]:
    check_channels("VectorBatchNorm", u, self.num_features)
    u, v = promote_dtype(u, v, dtype=self.dtype)
    if first(use_running_average, self.use_running_average):
      var = self.running_var[...].astype(float32_inside(u.dtype))
    else:
      acc = float32_inside(u.dtype)
      magnitude = vector_magnitude(u.astype(acc), v.astype(acc))
      var = jnp.var(magnitude, axis=tuple(range(u.ndim - 1)))
      n = magnitude.size / self.num_features
      self.running_var[...] = ((1 - self.momentum) * self.running_var[...]
                               + self.momentum * jax.lax.stop_gradient(var) * n / (n - 1)
                               ).astype(self.param_dtype)
    scale = jax.lax.rsqrt(self.epsilon + var).astype(u.dtype)
    return u * scale, v * scale
