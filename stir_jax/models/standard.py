"""The standard CNN baseline: two valid 7x7 convolutions, global max pooling, a dense classifier."""
from __future__ import annotations

import jax
import flax.linen as nn

from stir_jax.models import common


class StandardCNN(common.ModelBase):
  """conv C->16 valid, ReLU, conv 16->32 valid, ReLU, global max, dense.

  Equivariant to integer translations (exactly, on the valid region); the global max makes the
  features invariant to them. Not equivariant to scale.

  x: (batch, 64, 64, channels) float32 -> logits (batch, num_classes).
  aux: stage1 (B, 58, 58, 16), stage2 (B, 52, 52, 32), features (B, 32).

  >>> model = StandardCNN(num_classes=10)
  >>> variables = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 64, 64, 1)))

  Attributes: those of `common.ModelBase` (interpolation unused; impl: the convolution form, see
  `stir_jax.layers.conv.conv2d`).
  """

  @nn.compact
  def __call__(self, x: jax.Array, with_aux: bool = False):
    conv = lambda c, name: self.layer(common.Conv, c, self.kernel_size, name=name)
    x = common.compute_input(x, self.dtype)
    stage1 = nn.relu(conv(16, "conv1")(x))
    stage2 = nn.relu(conv(32, "conv2")(stage1))
    return self.classify(stage2, with_aux, stage1=stage1)


def from_torch(state: dict) -> dict:
  """Reference state dict (conv1.*, conv2.*, lin.*) -> params."""
  return {"conv1": common.torch_conv(state, "conv1"),
          "conv2": common.torch_conv(state, "conv2"),
          "lin": common.torch_dense(state, "lin")}
