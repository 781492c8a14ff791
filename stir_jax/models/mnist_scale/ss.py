"""MNIST_SS of the sesn repository: SS-CNN (Ghosh & Gupta 2019) on 28x28 MNIST-scale digits.

Three scale-steerable layers (`stir_jax.layers.scale_steerable.ScaleConvSteering`, 1 -> 30 -> 60
-> 90 channels, nominal size 11, kernel sizes 5, 7, 9, 11, 13, each with its max over sizes and
ReLU), each followed by a max-pool (2, 2, then 4 with padding 2) and a batch norm (``bn1``,
``bn2``, ``bn3_mag``), then the sesn head written as 1x1 convolutions (``fc1`` with a bias, see
`common.Head`).

Reference: ISosnovik/sesn (commit deaa16c), ``models/mnist_ss.py``, ``MNIST_SS`` /
``mnist_ss_28``. Its ``bn3`` is constructed but never used (zero gradient) and each layer's
``steer_conv.const_real`` is never read: neither is created here. The ``steer_conv.filter_*``
buffers are rebuilt by `steerable_basis` (13 x 13).

>>> module, variables = stir_jax.convert.from_sesn_model("mnist_ss_28", state_dict)
>>> logits = module.apply(variables, x)                  # x (B, 28, 28, 1) -> (B, 10)
"""
from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax

from stir_jax.layers import scale_steerable
from stir_jax.layers.scale_steerable import ScaleConvSteering
from stir_jax.models.common import MnistBase, compute_input
from stir_jax.models.mnist_scale import common

CHANNELS = (30, 60, 90)
KERNEL_SIZE = 11
KERNEL_SIZES = (5, 7, 9, 11, 13)


class MnistSS(MnistBase):
  """``MNIST_SS`` (``mnist_ss_28``): (B, 28, 28, 1) -> (B, num_classes) logits.

  Attributes:
    num_classes: logits per sample.
    pool_size: the last max-pool's window (4; padding 2).
    kernel_sizes: the steered kernel sizes of every layer (nominal size 11).
    impl: convolution form of the steerable layers ("auto", "direct", "fft").
    dtype, param_dtype, precision: as flax.linen.Conv (precision default "highest").
  """
  pool_size: int = 4
  kernel_sizes: Sequence[int] = KERNEL_SIZES

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    """x: (batch, 28, 28, 1); train: batch statistics and dropout (needs a "dropout" rng)."""
    x = compute_input(x, self.dtype)
    for i, features in enumerate(CHANNELS, start=1):
      x = self.layer(ScaleConvSteering, features, KERNEL_SIZE, tuple(self.kernel_sizes),
                     name=f"conv{i}")(x)
      last = i == len(CHANNELS)
      x = common.max_pool(x, self.pool_size if last else 2, 2 if last else 0)
      x = common.batch_norm(train, "bn3_mag" if last else f"bn{i}", self.dtype,
                            self.param_dtype)(x)
    return self.layer(common.Head, self.num_classes, hidden_bias=True, name="head")(x, train)


def from_torch(state: dict) -> dict:
  """``MNIST_SS`` state dict -> ``{"params", "batch_stats"}`` (unused ``bn3`` and
  ``steer_conv.const_real`` dropped, ``filter_*`` buffers rebuilt)."""
  params, stats = {}, {}
  for i in (1, 2, 3):
    params[f"conv{i}"] = scale_steerable.from_torch(state, f"conv{i}.")
  for name in ("bn1", "bn2", "bn3_mag"):
    params[name], stats[name] = common.torch_bn(state, name)
  params["head"], stats["head"] = common.conv_head_from_torch(state)
  return {"params": params, "batch_stats": stats}
