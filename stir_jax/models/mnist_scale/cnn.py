"""The plain CNN baseline of the MNIST-scale benchmark (factory ``mnist_cnn_28``).

After ISosnovik/sesn, ``models/mnist_cnn.py``, class ``MNIST_CNN`` (Sosnovik, Szmaja, Smeulders,
"Scale-Equivariant Steerable Networks", ICLR 2020, Sec. 6.1): three blocks of
[7x7 convolution with padding 3 -> ReLU -> max-pool -> batch norm] with 32, 63 and 95 channels,
then the sesn head (`common.Head`). The first two pools halve the map (28 -> 14 -> 7); the third
is a 4x4 max-pool with padding 2, which leaves 2x2 ((7 + 4) // 4). Equivariant to translations by
multiples of the pooling strides only; not equivariant to scale (the benchmark's baseline).

x: (batch, 28, 28, 1) normalised images -> logits (batch, num_classes).

>>> model = MnistCNN()
>>> variables = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 28, 28, 1)))
>>> logits = model.apply(variables, x)                                     # eval mode
>>> logits, updates = model.apply(variables, x, train=True, mutable=["batch_stats"],
...                               rngs={"dropout": key})                    # train mode
"""
from __future__ import annotations

import flax.linen as nn
import jax

from stir_jax.models import common as stir_common
from stir_jax.models.mnist_scale import common

# (output channels, max-pool window, max-pool padding) of the three blocks.
BLOCKS = ((common.C1, 2, 0), (common.C2, 2, 0), (common.C3, 4, 2))
# The PyTorch nn.Sequential indices of each block's conv and batch norm in ``main``.
TORCH_INDICES = ((0, 3), (4, 7), (8, 11))


class MnistCNN(stir_common.MnistBase):
  """MNIST_CNN of the sesn repository (see the module docstring). Attributes: those of
  `stir_jax.models.common.MnistBase` (impl: the convolution form, `stir_jax.layers.conv.conv2d`)."""

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    x = stir_common.compute_input(x, self.dtype)
    for i, (features, window, padding) in enumerate(BLOCKS, start=1):
      x = self.layer(stir_common.Conv, features, 7, padding=3, name=f"conv{i}")(x)
      x = common.max_pool(nn.relu(x), window, padding)
      x = common.batch_norm(train, f"bn{i}", self.dtype, self.param_dtype)(x)
    return self.layer(common.Head, self.num_classes, name="linear")(x, train)


def from_torch(state: dict) -> dict:
  """The sesn state dict of MNIST_CNN (``main.<i>.*``, ``linear.<i>.*``; numpy arrays, PyTorch
  layouts) -> ``{"params", "batch_stats"}``."""
  params, stats = {}, {}
  for i, (conv, bn) in enumerate(TORCH_INDICES, start=1):
    params[f"conv{i}"] = stir_common.torch_conv(state, f"main.{conv}")
    params[f"bn{i}"], stats[f"bn{i}"] = common.torch_bn(state, f"main.{bn}")
  params["linear"], stats["linear"] = common.head_from_torch(state)
  return {"params": params, "batch_stats": stats}
