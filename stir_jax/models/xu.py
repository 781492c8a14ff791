"""SiCNN (Xu et al. 2014): multi-column CNN whose columns share one kernel at different sizes.

The layer is `stir_jax.layers.xu` (`xu_kernels`, `xu_conv2d`, `XuConv`). Each layer keeps one 7x7
kernel per (out, in) pair; column ``g`` uses it rescaled to size ``kernel_sizes[g]`` (3, 5, 7, 9,
11): nearest upsampling above 7, bilinear (corners aligned) downsampling below, each resized kernel
zero-padded to 11x11 and L1-renormalised to the padded original. Layer 1 feeds all columns from the
image; layer 2 is grouped so each column only sees its own layer-1 maps; the columns are max-pooled,
then a global max and a dense layer follow. All convs use 'same' padding (5) and have no bias, so
maps stay 64x64.

Scale behaviour: a column whose kernel size matches an object's scale responds like the 7x7 kernel
at the reference scale, and the max over columns makes the response approximately invariant over the
discrete set of 5 kernel sizes (0.43x to 1.57x); it is not exactly equivariant (kernel resampling
and fixed image grid).

Reference: ``XuConv2d`` / the Xu model of the authors' code (``conv1.weight``, ``conv2.weight``,
``lin.*``).
"""
from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from stir_jax.layers.xu import KERNEL_SIZES, XuConv
from stir_jax.models import common


class XuModel(common.ModelBase):
  """SiCNN column network: Xu layer C->16 per column, ReLU, grouped Xu layer 16->32, ReLU, max over
  columns, global max, dense.

  Attributes:
    num_classes: logits per sample.
    kernel_size: side of the trained kernels.
    interpolation: unused (kept for a uniform model signature).
    kernel_sizes: column kernel sizes.
    impl: convolution algorithm of both layers, see `stir_jax.layers.conv.conv2d`.
    dtype, param_dtype, precision: as flax.linen.Conv (precision default "highest").
  """
  kernel_sizes: Sequence[int] = KERNEL_SIZES

  @nn.compact
  def __call__(self, x: jax.Array, with_aux: bool = False):
    """Logits (batch, num_classes) of images x (batch, 64, 64, channels), or (logits, aux) with aux
    ``features`` (B, 32), ``conv1_kernel`` (11, 11, C, 80) and ``conv2_kernel`` (11, 11, 16,
    160) (HWIO column kernels).
    """
    columns = len(self.kernel_sizes)
    conv = lambda c, initial, name: self.layer(XuConv, c, self.kernel_size, self.kernel_sizes,
                                               initial, name=name)
    x = common.compute_input(x, self.dtype)
    y, kernel1 = conv(16, True, "conv1")(x)
    y = nn.relu(y)
    y, kernel2 = conv(32, False, "conv2")(y)
    y = nn.relu(y)
    y = jnp.max(y.reshape(*y.shape[:3], columns, 32), axis=3)
    features = common.global_max(y)
    logits = self.layer(common.Dense, self.num_classes, name="lin")(features)
    if not with_aux:
      return logits
    return logits, {"features": features, "conv1_kernel": kernel1, "conv2_kernel": kernel2}

  @staticmethod
  def from_torch(state: dict[str, np.ndarray]) -> dict:
    """Reference state_dict (``conv1.weight``, ``conv2.weight``, ``lin.*``) to ``params``."""
    return {"conv1": common.torch_conv(state, "conv1"), "conv2": common.torch_conv(state, "conv2"),
            "lin": common.torch_dense(state, "lin")}


from_torch = XuModel.from_torch
