"""Deep Scale-Spaces (DSS; Worrall & Welling, "Deep Scale-spaces: Equivariance Over Scale", NeurIPS
2019) as a STIR model, in the paper's pattern of the other models (Altstidl et al., arXiv
2211.10288): two layers with 16 and 32 channels, ReLU after each, a global max over (scale, y, x),
a dense layer. This model is not in the paper; it adds the DSS family to the comparison. No
reference checkpoint exists (`from_torch` raises).

Body (layers `stir_jax.layers.dss`):
  BesselConv2d lift to S = 3 scales (base 2, zero scale 0.5)     (B, 64, 64, C) -> (B, 3, 64, 64, C)
  Dconv2d C -> 16, kernel (1, k, k), dilations 1, 2, 4, ReLU     -> (B, 3, 64, 64, 16)  "stage1"
  Dconv2d 16 -> 32, kernel (1, k, k), dilations 1, 2, 4, ReLU    -> (B, 3, 64, 64, 32)  "stage2"
  global max over scale and space, dense 32 -> num_classes

The lifting blurs scale d with Lindeberg's discrete Gaussian so that an input of blur 0.5 px reaches
blur ``0.5 * 2**d`` (variances 0.75 and 3.75), and layer d's kernels are dilated by ``2**d``: the
scale axis is a discrete scale space sampled an octave apart, and rescaling the input by 2 shifts it
by one scale (approximately, see `stir_jax.layers.dss`).

Why these scales: STIR objects are 17..64 px, a range of 64 / 17 = 3.8, just under two octaves.
The reference computes the dilations as ``int(base**s)``, so a useful base is an integer, and base 2
is the finest one. Three scales (dilations 1, 2, 4) then span a factor 4, the whole size range: the
two-layer receptive field is 13 px at scale 0 (inside the smallest, 17 px objects), 25 px at
scale 1 and 49 px at scale 2 (most of a 64 px object). A fourth scale (dilation 8) would see 97 px,
more than the image, at a third more cost. The zero scale 0.5 is the reference's default and
the blur of a pixel-sampled image; it makes the blur of each scale half its dilation, the usual
anti-aliasing before subsampling by that factor. DSS's "same" zero padding (dilation * (k // 2))
is kept, since the per-scale dilations make valid outputs differ in size across scales.

Parameters: a scale kernel size of 1 (as the authors' MNIST models use; no mixing across scales,
like the STIR hermite/disco models' H -> H layer), so the count equals that of the SESN models:
``16 * C * k**2 + 16 + 32 * 16 * k**2 + 32 + 33 * num_classes`` = 27,108 for one channel and the
36 emoji classes (26,250 for 10 classes), against 27,108 for hermite/disco. Conv weights are He
normal with bias 1 (the reference's ``init='he'``), and the dense layer is PyTorch's default.

Example:
  >>> model = DSSModel(num_classes=36)
  >>> x = jnp.zeros((2, 64, 64, 1))
  >>> variables = model.init(jax.random.PRNGKey(0), x)
  >>> model.apply(variables, x).shape
  (2, 36)
"""
from __future__ import annotations


import flax.linen as nn
import jax
import numpy as np

from stir_jax.layers.dss import BesselConv2d, Dconv2d
from stir_jax.models import common

NUM_SCALES = 3
BASE = 2
ZERO_SCALE = 0.5


class DSSModel(common.ModelBase):
  """DSS body: Bessel lift, Dconv C->16, ReLU, Dconv 16->32, ReLU, global max, dense.

  Attributes:
    num_classes: logits per sample.
    kernel_size: spatial kernel size k of both layers (7).
    interpolation: unused (kept for a uniform model signature).
    num_scales, base, zero_scale: the scale space (3, 2, 0.5; see the module docstring).
    impl: one form only (lax convolutions): "auto" or "direct"; "fft" is an error.
    dtype, param_dtype, precision: as flax.linen.Conv (precision default "highest").
  """
  impls = ("direct",)
  num_scales: int = NUM_SCALES
  base: int = BASE
  zero_scale: float = ZERO_SCALE

  def scale_axis_ratio(self) -> float:
    """Ratio of neighbouring scale channels' scales (dilations and blurs): the base, 2."""
    return float(self.base)

  @nn.compact
  def __call__(self, x: jax.Array, with_aux: bool = False):
    """Logits (batch, num_classes) of images x (batch, 64, 64, channels), or (logits, aux) with aux
    ``stage1`` (B, 3, 64, 64, 16), ``stage2`` (B, 3, 64, 64, 32) and ``features`` (B, 32).
    """
    self.checked_impl()
    x = common.compute_input(x, self.dtype)
    lifted = self.layer(BesselConv2d, self.num_scales, base=self.base,
                        zero_scale=self.zero_scale)(x)
    kernel = (1, self.kernel_size, self.kernel_size)
    dconv = lambda c, name: self.layer(Dconv2d, c, kernel, base=self.base, use_bias=True, name=name)
    stage1 = nn.relu(dconv(16, "conv1")(lifted))
    stage2 = nn.relu(dconv(32, "conv2")(stage1))
    return self.classify(stage2, with_aux, stage1=stage1)


def from_torch(state: dict[str, np.ndarray]) -> dict:
  """No reference (PyTorch) checkpoint of this model exists: always raises ValueError."""
  raise ValueError("the dss model has no reference checkpoint to convert: it is not a model of the "
                   "paper's code (see stir_jax.models.mnist_scale for the DSS models of the SESN "
                   "authors' code)")
