"""SEVF (Marcos et al. 2018, scale-equivariant vector fields) in the paper's STIR model pattern.

Not one of the paper's models: a baseline beside them, built like `stir_jax.models.sesn` (two
layers with 16 and 32 channels, a global max over scale and space, a dense layer). Each layer is a
SEVF scale convolution (`stir_jax.layers.sevf`): the input is resized by every factor ``1.26**i``,
correlated with one shared 7x7 kernel ('same' padding 3, so the branches stay aligned and the maps
64x64) and resized back; the maximum over factors and its argmax give a vector field (magnitude
``ReLU(max)``, angle of the winning factor).

* default (registry "sevf"): scalar layers, as the sesn repository's ``MNIST_SEVF_Scalar``: layer 1
  C->16, magnitude, layer 2 16->32, magnitude. No biases: 16 * 49 * C + 32 * 16 * 49 +
  33 * num_classes = 27,060 parameters for grey images and 36 classes (the paper's models have
  about 27k; the standard CNN 27,108).
* ``vector=True``: layer 2 is the vector layer (``ScaleConvVector``, kernel pair rotated by each
  factor's angle) on layer 1's field, as ``MNIST_SEVF_Vector``; twice the layer-2 weights (52,148
  parameters for grey images and 36 classes).

Factors ``1.26**i`` for ``i = -6 .. 0`` (0.25 .. 1, ``n_scales_small=7, n_scales_big=0``): the
7x7 kernel then spans 7 to 7 / 0.25 = 28 input pixels, a 4.0x range to match the 3.8x range of
STIR's object sizes (17 .. 64 px): the smallest objects meet the kernel at full resolution, as in
the standard CNN, and the largest shrink to it. Only downscaling keeps all seven branches at 2.6
plain convolutions of work (the reference's default reaches 2.0, upscaling to 128x128, whose
branch alone costs four). Measured on the shared 2-core CPU: a train step at batch 16 takes 1.6 s
against the standard CNN's 0.2 s (about 8x: the 'same' branches, the resizes and their gradients).

Scale behaviour: the max over resized branches makes each layer's magnitude approximately invariant
to local rescalings by the covered factors (and the angle approximately equivariant); approximate
because of bilinear resampling, rounded sizes and the finite factor set.

Reference (the layers): ISosnovik/sesn (commit deaa16c), ``models/impl/se_vector_fields.py``; no
reference STIR model or checkpoint exists, so `from_torch` raises.
"""
from __future__ import annotations


import flax.linen as nn
import jax

from stir_jax.layers.sevf import SEVFScalarConv, SEVFVectorConv, vector_magnitude
from stir_jax.models import common

N_SCALES_SMALL = 7
N_SCALES_BIG = 0


class SEVFModel(common.ModelBase):
  """SEVF: scale conv C->16, magnitude, scale conv 16->32 (scalar, or vector on layer 1's field),
  magnitude, global max, dense.

  Attributes:
    num_classes: logits per sample.
    kernel_size: kernel side (padding ``kernel_size // 2``).
    interpolation: unused (kept for a uniform model signature).
    vector: layer 2 is the vector layer on layer 1's vector field (default: scalar layers).
    n_scales_small, n_scales_big, base: the factors ``base**i``, ``i = -(n_scales_small - 1) ..
      n_scales_big`` (angles spread over 2 pi / 3).
    impl: convolution algorithm, see `stir_jax.layers.conv.conv2d`.
    dtype, param_dtype, precision: as flax.linen.Conv (precision default "highest").
  """
  vector: bool = False
  n_scales_small: int = N_SCALES_SMALL
  n_scales_big: int = N_SCALES_BIG
  base: float = 1.26

  def _layer(self, cls, features: int, name: str):
    return self.layer(cls, features, self.kernel_size, self.kernel_size // 2,
                      self.n_scales_small, self.n_scales_big, self.base, name=name)

  @nn.compact
  def __call__(self, x: jax.Array, with_aux: bool = False):
    """Logits (batch, num_classes) of images x (batch, 64, 64, channels), or (logits, aux) with aux
    ``stage1`` (B, 64, 64, 16) and ``stage2`` (B, 64, 64, 32) (the magnitudes) and ``features``
    (B, 32).
    """
    x = common.compute_input(x, self.dtype)
    field = self._layer(SEVFScalarConv, 16, "conv1")(x)
    stage1 = vector_magnitude(*field)
    if self.vector:
      stage2 = vector_magnitude(*self._layer(SEVFVectorConv, 32, "conv2")(*field))
    else:
      stage2 = vector_magnitude(*self._layer(SEVFScalarConv, 32, "conv2")(stage1))
    return self.classify(stage2, with_aux, stage1=stage1)


def from_torch(state: dict) -> dict:
  """Raises ValueError: no reference (PyTorch) checkpoint of this STIR model exists."""
  del state
  raise ValueError("no reference checkpoint exists for the STIR 'sevf' model (SEVF is not among "
                   "the paper's models); train it with train.py, or load the sesn repository's "
                   "MNIST models with stir_jax.convert.from_sesn_model('mnist_sevf_scalar_28' or "
                   "'mnist_sevf_vector_28', ...)")
