"""The layer library: pure functions on jax.Array, with thin Flax modules over them.

Importing it changes nothing global (no XLA_FLAGS, no environment, no jax.config) and pulls in
neither TensorFlow nor orbax. Every module takes ``dtype`` (computation; None infers it),
``param_dtype`` (float32) and ``precision`` (default "highest": float32 products on CPU and GPU,
six bfloat16 passes on TPU; "default" lets the backend choose), with flax.linen.Conv's meanings;
every pure function takes ``precision`` and computes in the promoted dtype of its arguments
(`stir_jax.layers.dtypes`, docs/precision.md). Layers with more than one computational form take
``impl`` = "auto" | "direct" | "fft" ("auto": per lowering platform and precision from the one table
`stir_jax.layers.forms.FORM_TABLE`; "xla" is a deprecated alias of "direct").

Layer families (function -> module):
  siconv2d(x, w, b, num_scales=S, interpolation=..., impl="auto"|"direct"|"fft")
                                                       -> (B, S, H', W', O)
                                                       SiConv2d (the paper's layer)
  siconv2d_pool(x, w, b, num_scales=S, pool="pixel"|"slice"|"energy")  SiConv2d(pool=...)
                                                       -> scale_pool(siconv2d(...), pool), fused
  scale_pool(y, mode)                                  -> (pooled, indices); ScalePool
  xu_kernels(w, kernel_sizes), xu_conv2d(x, w, grouped=...)   XuConv (Xu et al.'s SiCNN layer)
    the sesn repository's version: xu_sesn_kernels(w, scales), xu_sesn_conv2d    XuSesnConv
  kanazawa_conv2d(x, w, b, scales, padding=0)                 KanazawaConv (SI-ConvNet layer;
    padding=p with its scales is the sesn repository's Kanazawa_SIConv2d)
  sesn_lift(x, w, b, basis), sesn_scale_conv(x, w, b, basis), sesn_conv1x1(x, w)
                                        SESConvZ2H, SESConvHH, SESConvHH1x1 (SESN, Sosnovik et al.;
    bases hermite_basis_a ("A"), hermite_basis ("B"), disco_basis,
    sesn_basis_for("hermite" | "disco"))
  dss_besselconv2d(x, num_scales), dss_dconv2d(x, w, b, base)  BesselConv2d, Dconv2d (Deep
    Scale-Spaces, Worrall & Welling: discrete-Gaussian lifting, dilated semigroup convolution)
  scale_steerable_conv2d(x, mult_real, mult_imag, basis, kernel_sizes, kernel_size)
    basis steerable_basis(size)                               ScaleConvSteering (SS-CNN)
  sevf_scalar_conv2d(x, w, scales, angles), sevf_vector_conv2d(u, v, w_u, w_v, ...) -> (u, v)
    scales sevf_scales(); vector_magnitude, vector_max_pool   SEVFScalarConv, SEVFVectorConv,
                                                              VectorMaxPool, VectorBatchNorm (SEVF)
  gaussian_pyramid(x, levels)                                 GaussianPyramid (the ensemble's)
  affine_warp(x, theta), affine_grid, grid_sample_bilinear    AffineWarp (spatial transformer)
  gaussian_derivative_conv(x, weights, bias, sigmas) -> (B, S, H, W, O)   GaussDerConv (Gaussian
    derivative layer over scale channels, Lindeberg 2022); pool_scales(y, "max" | "avg"),
    scale_series, scale_channel_jet
Helpers: conv2d / conv3d (XLA or exact FFT forms), conv3d_relu_max (conv3d, ReLU and a global max
with a backward pass through the maxima alone), interpolation_matrix, resize_kernel,
num_scales_for, torch_uniform.
Submodule `stir_jax.layers.gaussian`: Lindeberg's discrete scale space (the discrete analogue of the
Gaussian, sampled and integrated Gaussians and their derivatives, the N-jet, jet2mask), exact and
differentiable in sigma, checked against pyscsp 1.0.3: the building blocks of Gaussian-derivative
networks; `stir_jax.layers.gaussian_derivative` (GaussDerConv) is the layer over them.

>>> y = siconv2d(x, w, b, num_scales=num_scales_for(64, 7))   # x (B, 64, 64, C), w (7, 7, C, 16)
>>> pooled, idx = scale_pool(y, "pixel")                      # (B, 58, 58, 16), (B, 58, 58, 16)
>>> layer = SiConv2d(16, pool="pixel", dtype=jnp.bfloat16)    # (pooled, idx) in bfloat16
"""
from stir_jax.layers.conv import conv2d, conv3d, conv3d_relu_max
from stir_jax.layers.dss import BesselConv2d, Dconv2d, dss_besselconv2d, dss_dconv2d
from stir_jax.layers.dtypes import DEFAULT_PRECISION
from stir_jax.layers.gaussian_derivative import GaussDerConv, gaussian_derivative_conv
from stir_jax.layers.gaussian_derivative import pool_scales, scale_channel_jet, scale_series
from stir_jax.layers.initializers import torch_uniform
from stir_jax.layers.interpolation import MODES, interpolation_matrix, resize_kernel
from stir_jax.layers.kanazawa import KanazawaConv, kanazawa_conv2d
from stir_jax.layers.resample import AffineWarp, GaussianPyramid, affine_grid, affine_warp
from stir_jax.layers.resample import gaussian_pyramid, grid_sample_bilinear
from stir_jax.layers.scale_pool import POOL_MODES, ScalePool, scale_pool
from stir_jax.layers.scale_steerable import ScaleConvSteering, SteerableBasis
from stir_jax.layers.scale_steerable import scale_steerable_conv2d, steerable_basis
from stir_jax.layers.sesn import SESConvHH, SESConvHH1x1, SESConvZ2H, sesn_basis_for, sesn_conv1x1
from stir_jax.layers.sesn import sesn_lift, sesn_scale_conv
from stir_jax.layers.sesn_basis import disco_basis, hermite_basis, hermite_basis_a
from stir_jax.layers.sevf import SEVFScalarConv, SEVFVectorConv, VectorBatchNorm, VectorMaxPool
from stir_jax.layers.sevf import sevf_scalar_conv2d, sevf_scales, sevf_vector_conv2d
from stir_jax.layers.sevf import vector_magnitude, vector_max_pool
from stir_jax.layers.siconv import SiConv2d, num_scales_for, siconv2d, siconv2d_pool
from stir_jax.layers.xu import XuConv, XuSesnConv, xu_conv2d, xu_kernels, xu_sesn_conv2d
from stir_jax.layers.xu import xu_sesn_kernels

__all__ = [
    "AffineWarp", "BesselConv2d", "DEFAULT_PRECISION", "Dconv2d", "GaussDerConv", "GaussianPyramid",
    "KanazawaConv", "MODES", "POOL_MODES", "SESConvHH", "SESConvHH1x1", "SESConvZ2H",
    "SEVFScalarConv", "SEVFVectorConv", "ScaleConvSteering", "ScalePool", "SiConv2d",
    "SteerableBasis", "VectorBatchNorm", "VectorMaxPool", "XuConv", "XuSesnConv", "affine_grid",
    "affine_warp", "conv2d", "conv3d", "conv3d_relu_max", "disco_basis", "dss_besselconv2d", "dss_dconv2d",
    "gaussian_derivative_conv", "gaussian_pyramid", "grid_sample_bilinear", "hermite_basis",
    "hermite_basis_a", "interpolation_matrix", "kanazawa_conv2d", "num_scales_for", "pool_scales",
    "resize_kernel", "scale_channel_jet", "scale_pool", "scale_series", "scale_steerable_conv2d",
    "sesn_basis_for", "sesn_conv1x1", "sesn_lift", "sesn_scale_conv", "sevf_scalar_conv2d",
    "sevf_scales", "sevf_vector_conv2d", "siconv2d", "siconv2d_pool", "steerable_basis",
    "torch_uniform", "vector_magnitude", "vector_max_pool", "xu_conv2d", "xu_kernels",
    "xu_sesn_conv2d", "xu_sesn_kernels",
]
