"""SS-CNN (Ghosh & Gupta 2019, scale-steerable filters) in the paper's STIR model pattern.

Not one of the paper's models: a baseline beside them, built like `stir_jax.models.sesn` (two
scale-equivariant layers with 16 and 32 channels, a global max over scale and space, a dense
layer). Each layer is `stir_jax.layers.scale_steerable.ScaleConvSteering`: its kernels are complex
combinations of fixed log-radial harmonics (3 radial orders x 9 angular windows), steered to every
kernel size, correlated with 'same' padding, max-pooled over the sizes and ReLU'd (the scale axis
is pooled inside the layer, as in the reference). Maps stay 64x64.

Kernel sizes (5, 7, 9, 13, 19) around the nominal 7 (the base kernel size of every STIR model):
steered scales n / 7 from 0.71 to 2.71, a 3.8x range to match the 3.8x range of STIR's object
sizes (17 .. 64 px), in roughly geometric steps (x1.3 .. 1.46) as the object sizes are spread in
scale. Below 5 the log-radial basis has almost no support left; large sizes cost little in the
FFT form the layer takes on CPU (one correlation with all sizes' kernels zero-padded to 19x19,
whose cost hardly depends on the kernel size). Measured on the shared 2-core CPU: a train step at
batch 16 takes 2.3-2.6 s against the standard CNN's 0.2-0.25 s (about 12x; XLA's direct
convolution instead: 10.7 s).

Parameters (no biases, as the reference): ``mult_real`` and ``mult_imag`` (3, out, in, 9) per
layer: 2 * 27 * 16 * C + 2 * 27 * 32 * 16 + 33 * num_classes = 29,700 for grey images and 36
classes (the paper's models have about 27k; the standard CNN 27,108).

Scale behaviour: the max over steered sizes makes each layer's response approximately invariant to
local rescalings within 0.71 .. 2.71 of the nominal size (approximate: the basis is sampled on a
pixel grid and cropped); the global max adds translation invariance.

Reference (the layer): ISosnovik/sesn (commit deaa16c), ``models/impl/scale_steerable.py``,
``ScaleConv_steering``; no reference STIR model or checkpoint exists, so `from_torch` raises.
"""
from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax

from stir_jax.layers.scale_steerable import ScaleConvSteering
from stir_jax.models import common

KERNEL_SIZES = (5, 7, 9, 13, 19)


class ScaleSteerableModel(common.ModelBase):
  """SS-CNN: steerable conv C->16, steerable conv 16->32 (each with its max over kernel sizes and
  ReLU), global max, dense.

  Attributes:
    num_classes: logits per sample.
    kernel_size: nominal kernel size (size n is steered to scale n / kernel_size).
    interpolation: unused (kept for a uniform model signature).
    kernel_sizes: the steered kernel sizes of both layers.
    impl: convolution algorithm ("auto": FFT on CPU for these large kernels, XLA elsewhere).
    dtype, param_dtype, precision: as flax.linen.Conv (precision default "highest").
  """
  kernel_sizes: Sequence[int] = KERNEL_SIZES

  @nn.compact
  def __call__(self, x: jax.Array, with_aux: bool = False):
    """Logits (batch, num_classes) of images x (batch, 64, 64, channels), or (logits, aux) with aux
    ``stage1`` (B, 64, 64, 16), ``stage2`` (B, 64, 64, 32) and ``features`` (B, 32).
    """
    x = common.compute_input(x, self.dtype)
    sizes = tuple(self.kernel_sizes)
    conv = lambda c, name: self.layer(ScaleConvSteering, c, self.kernel_size, sizes, name=name)
    stage1 = conv(16, "conv1")(x)
    stage2 = conv(32, "conv2")(stage1)
    return self.classify(stage2, with_aux, stage1=stage1)


def from_torch(state: dict) -> dict:
  """Raises ValueError: no reference (PyTorch) checkpoint of this STIR model exists."""
  del state
  raise ValueError("no reference checkpoint exists for the STIR 'ss' model (SS-CNN is not among "
                   "the paper's models); train it with train.py, or load the sesn repository's "
                   "MNIST model with stir_jax.convert.from_sesn_model('mnist_ss_28', ...)")
