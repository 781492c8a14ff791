"""The layer library: pure functions on jax.Array, with thin Flax modules over them.

Functional API (usable from any JAX code: Linen, NNX, Equinox, plain jax):
  interpolation_matrix(kernel_size, target_size, mode) -> (target, kernel) NumPy matrix
  resize_kernel(weight, target_size, mode)             -> (t, t, Cin, Cout)
  siconv2d(x, weight, bias, num_scales=S, mode=..., impl="auto"|"direct"|"fft")
                                                       -> (B, S, H-k+1, W-k+1, Cout)
  scale_pool(y, mode)                                  -> (pooled, indices)
  siconv2d_pool(x, weight, bias, num_scales=S, pool="pixel"|"slice"|"energy")
                                                       -> scale_pool(siconv2d(...), pool), fused
  conv2d(x, kernel, bias, padding, impl="auto"|"xla"|"fft")
Flax modules: SiConv2d, ScalePool.

>>> y = siconv2d(x, w, b, num_scales=num_scales_for(64, 7))   # x (B, 64, 64, C), w (7, 7, C, 16)
>>> pooled, idx = scale_pool(y, "pixel")                      # (B, 58, 58, 16), (B, 58, 58, 16)
"""
from stir_jax.layers.conv import conv2d
from stir_jax.layers.interpolation import MODES, interpolation_matrix, resize_kernel
from stir_jax.layers.scale_pool import POOL_MODES, ScalePool, scale_pool
from stir_jax.layers.siconv import SiConv2d, num_scales_for, siconv2d, siconv2d_pool

__all__ = ["MODES", "POOL_MODES", "ScalePool", "SiConv2d", "conv2d", "interpolation_matrix",
           "num_scales_for", "resize_kernel", "scale_pool", "siconv2d", "siconv2d_pool"]
