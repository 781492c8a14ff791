"""MNIST_Kanazawa of the sesn repository: SI-ConvNet (Kanazawa et al. 2014) on 28x28 MNIST-scale.

As the sesn MNIST CNN (3 x [conv 7x7, padding 3 -> ReLU -> max-pool 2 (the last 4, padding 2) ->
BatchNorm2d], then the head of `common.Head`), with every convolution a Kanazawa layer
(`stir_jax.layers.kanazawa.KanazawaConv` with ``padding=3``: the sesn repository's
``Kanazawa_SIConv2d``) over the scales 0.3, 0.45, 0.67, 1, 1.49, 2.23, 3.33. Channels 32, 63, 95.

Reference: ISosnovik/sesn (commit deaa16c), ``models/mnist_kanazawa.py``, ``MNIST_Kanazawa`` /
``mnist_kanazawa_28``; its ``main.{0,4,8}`` are the convolutions, ``main.{3,7,11}`` the batch
norms, ``linear.{0,1,4}`` the head.

>>> module, variables = stir_jax.convert.from_sesn_model("mnist_kanazawa_28", state_dict)
>>> logits = module.apply(variables, x)                  # x (B, 28, 28, 1) -> (B, 10)
"""
from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import numpy as np

from stir_jax.layers.kanazawa import KanazawaConv
from stir_jax.models import common as stir_common
from stir_jax.models.common import compute_input
from stir_jax.models.mnist_scale import common

SCALES = (0.3, 0.45, 0.67, 1.0, 1.49, 2.23, 3.33)
KERNEL_SIZE = 7
PADDING = 3
_TORCH_INDEX = {1: (0, 3), 2: (4, 7), 3: (8, 11)}  # layer -> (conv, batch norm) in ``main``


class MnistKanazawa(stir_common.MnistBase):
  """``MNIST_Kanazawa`` (``mnist_kanazawa_28``): (B, 28, 28, 1) -> (B, num_classes) logits.

  Attributes:
    num_classes: logits per sample.
    pool_size: the last max-pool's window (4; padding 2).
    scales: the rescaling factors of every layer.
    impl: convolution algorithm, see `stir_jax.layers.conv.conv2d`.
    dtype, param_dtype, precision: as flax.linen.Conv (precision default "highest").
  """
  pool_size: int = 4
  scales: Sequence[float] = SCALES

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    """x: (batch, 28, 28, 1); train: batch statistics and dropout (needs a "dropout" rng)."""
    x = compute_input(x, self.dtype)
    for i, features in enumerate((common.C1, common.C2, common.C3), start=1):
      x = self.layer(KanazawaConv, features, KERNEL_SIZE, tuple(self.scales), padding=PADDING,
                     name=f"conv{i}")(x)
      last = i == 3
      x = common.max_pool(nn.relu(x), self.pool_size if last else 2, 2 if last else 0)
      x = common.batch_norm(train, f"bn{i}", self.dtype, self.param_dtype)(x)
    return self.layer(common.Head, self.num_classes, name="head")(x, train)


def from_torch(state: dict) -> dict:
  """``MNIST_Kanazawa`` state dict -> ``{"params", "batch_stats"}``."""
  params, stats = {}, {}
  for i, (conv, bn) in _TORCH_INDEX.items():
    params[f"conv{i}"] = {"conv": {
        "kernel": np.asarray(state[f"main.{conv}.weight"], np.float32).transpose(2, 3, 1, 0),
        "bias": np.asarray(state[f"main.{conv}.bias"], np.float32)}}
    params[f"bn{i}"], stats[f"bn{i}"] = common.torch_bn(state, f"main.{bn}")
  params["head"], stats["head"] = common.head_from_torch(state)
  return {"params": params, "batch_stats": stats}
