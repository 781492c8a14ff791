"""The standard CNN baseline: two valid 7x7 convolutions, global max pooling, a dense classifier."""
from __future__ import annotations

from typing import Optional

import jax
import jax.numpy as jnp
import flax.linen as nn

from stir_jax.layers.dtypes import DEFAULT_PRECISION, Dtype, PrecisionLike
from stir_jax.models import common


class StandardCNN(nn.Module):
  """conv C->16 valid, ReLU, conv 16->32 valid, ReLU, global max, dense.

  Equivariant to integer translations (exactly, on the valid region); the global max makes the
  features invariant to them. Not equivariant to scale.

  x: (batch, 64, 64, channels) float32 -> logits (batch, num_classes).
  aux: stage1 (B, 58, 58, 16), stage2 (B, 52, 52, 32), features (B, 32).

  >>> model = StandardCNN(num_classes=10)
  >>> variables = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 64, 64, 1)))
  """
  num_classes: int
  kernel_size: int = 7
  interpolation: str = "bicubic"  # unused; kept so every model shares one signature
  impl: str = "auto"  # convolution algorithm, see stir_jax.layers.conv.conv2d
  dtype: Optional[Dtype] = None  # computation dtype; None: inferred (float32 for float32 images)
  param_dtype: Dtype = jnp.float32
  precision: PrecisionLike = DEFAULT_PRECISION  # of every conv and matmul ("default": backend's)

  @nn.compact
  def __call__(self, x: jax.Array, with_aux: bool = False):
    dt = common.dtype_kwargs(self)
    conv = lambda c, name: common.Conv(c, self.kernel_size, impl=self.impl, name=name, **dt)
    x = common.compute_input(x, self.dtype)
    stage1 = nn.relu(conv(16, "conv1")(x))
    stage2 = nn.relu(conv(32, "conv2")(stage1))
    features = common.global_max(stage2)
    logits = common.Dense(self.num_classes, name="lin", **dt)(features)
    if with_aux:
      return logits, {"stage1": stage1, "stage2": stage2, "features": features}
    return logits


def from_torch(state: dict) -> dict:
  """Reference state dict (conv1.*, conv2.*, lin.*) -> params."""
  return {"conv1": common.torch_conv(state, "conv1"),
          "conv2": common.torch_conv(state, "conv2"),
          "lin": common.torch_dense(state, "lin")}
