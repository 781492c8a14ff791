"""SI-ConvNet (Kanazawa et al. 2014): locally scale-invariant convolutions.

The layer is `stir_jax.layers.kanazawa` (`kanazawa_conv2d`, `KanazawaConv`). Each layer rescales its
input by ``1.26**e`` for ``e = -2 .. 3`` (bilinear, corners aligned, then a centred zero-pad or crop
back to the input size), applies one shared valid convolution (+ bias) to every rescaled copy,
rescales each result back by the inverse factor (again centred pad/crop to the valid output size),
and max-pools over the six scales; a ReLU follows. The network is two such layers (C->16, 16->32), a
global max and a dense layer.

Scale behaviour: the max over rescaled copies makes each layer's response approximately invariant to
local rescalings by the six factors (0.63x to 2x) at the image centre; resampling blur, the centred
crop/pad and the discrete factor set make it only approximate, and translations away from the centre
are not handled consistently across scales.

Reference: ``KanazawaConv2d`` / the Kanazawa model of the authors' code (``conv{1,2}.*``,
``lin.*``).
"""
from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import numpy as np

from stir_jax.layers.kanazawa import SCALES, KanazawaConv
from stir_jax.models import common


class KanazawaModel(common.ModelBase):
  """SI-ConvNet: Kanazawa conv C->16, ReLU, Kanazawa conv 16->32, ReLU, global max, dense.

  Attributes:
    num_classes: logits per sample.
    kernel_size: conv kernel side.
    interpolation: unused (kept for a uniform model signature).
    scales: the rescaling factors of both layers.
    impl: convolution algorithm, see `stir_jax.layers.conv.conv2d`.
    dtype, param_dtype, precision: as flax.linen.Conv (precision default "highest").
  """
  scales: Sequence[float] = SCALES

  @nn.compact
  def __call__(self, x: jax.Array, with_aux: bool = False):
    """Logits (batch, num_classes) of images x (batch, 64, 64, channels), or (logits, aux) with aux
    ``stage1`` (B, 58, 58, 16), ``stage2`` (B, 52, 52, 32) and ``features`` (B, 32).
    """
    conv = lambda c, name: self.layer(KanazawaConv, c, self.kernel_size, self.scales, name=name)
    x = common.compute_input(x, self.dtype)
    stage1 = nn.relu(conv(16, "conv1")(x))
    stage2 = nn.relu(conv(32, "conv2")(stage1))
    return self.classify(stage2, with_aux, stage1=stage1)

  @staticmethod
  def from_torch(state: dict[str, np.ndarray]) -> dict:
    """Reference state_dict (``conv1.*``, ``conv2.*``, ``lin.*``) to this model's ``params``."""
    return {"conv1": {"conv": common.torch_conv(state, "conv1")},
            "conv2": {"conv": common.torch_conv(state, "conv2")},
            "lin": common.torch_dense(state, "lin")}


from_torch = KanazawaModel.from_torch
