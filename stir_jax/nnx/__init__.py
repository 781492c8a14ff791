"""The layer library for Flax NNX: one `flax.nnx.Module` per Linen module of `stir_jax.layers`,
with the same class names, over the same pure functions.

Each module is built eagerly as `nnx.Conv` is, ``Layer(in_features, out_features, *, ...,
rngs=nnx.Rngs(0))``, with the Linen module's fields as keyword arguments, the same initialisers and
the same parameter names (an HWIO conv kernel is ``kernel``, its bias ``bias``; the SESN, DSS and
SS-CNN layers keep the reference layouts ``weight`` / ``weights`` / ``mult_real``). Calling it
returns what the Linen module returns, from the same pure function. Parameter-free layers
(`ScalePool`, `GaussianPyramid`, `AffineWarp`, `VectorMaxPool`, `BesselConv2d`) hold no state;
`VectorBatchNorm` keeps its running variance as an `nnx.BatchStat` and follows
``use_running_average`` / ``model.train()`` / ``model.eval()``. See docs/nnx.md.

Importing it changes nothing global and imports neither TensorFlow nor orbax.

>>> from flax import nnx
>>> layer = SiConv2d(1, 8, kernel_size=7, pool="pixel", rngs=nnx.Rngs(0))
>>> pooled, indices = layer(jnp.zeros((2, 32, 32, 1)))   # (2, 26, 26, 8) each
"""
from stir_jax.nnx.dss import BesselConv2d, Dconv2d
from stir_jax.nnx.gaussian_derivative import GaussDerConv
from stir_jax.nnx.kanazawa import KanazawaConv
from stir_jax.nnx.resample import AffineWarp, GaussianPyramid
from stir_jax.nnx.scale_steerable import ScaleConvSteering
from stir_jax.nnx.sesn import SESConvHH, SESConvHH1x1, SESConvZ2H
from stir_jax.nnx.sevf import SEVFScalarConv, SEVFVectorConv, VectorBatchNorm, VectorMaxPool
from stir_jax.nnx.siconv import ScalePool, SiConv2d
from stir_jax.nnx.xu import XuConv, XuSesnConv

__all__ = [
    "AffineWarp", "BesselConv2d", "Dconv2d", "GaussDerConv", "GaussianPyramid", "KanazawaConv",
    "SESConvHH", "SESConvHH1x1", "SESConvZ2H", "SEVFScalarConv", "SEVFVectorConv",
    "ScaleConvSteering", "ScalePool", "SiConv2d", "VectorBatchNorm", "VectorMaxPool", "XuConv",
    "XuSesnConv",
]
