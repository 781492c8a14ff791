"""MNIST_XU_Pool of the sesn repository: SiCNN (Xu et al. 2014) on 28x28 MNIST-scale digits.

Three layers of the sesn repository's ``XU_SIConv2d`` (`stir_jax.layers.xu.XuSesnConv`, 7x7
kernels, scales 0.3, 0.45, 0.67, 1, 1.49, 2.23, 3.33; the first reads the image, the others are
grouped per scale), each followed by ReLU, max-pool 2 (the last 4, padding 2) and a batch norm over
all ``7 * C`` channels; then the maximum over the 7 scale groups (ties to the first) and the head
of `common.Head`. Channels per scale 32, 63, 95.

Reference: ISosnovik/sesn (commit deaa16c), ``models/mnist_xu.py``, ``MNIST_XU_Pool`` /
``mnist_xu_28`` (``pool_from_groups`` with 'max'); ``main.{0,4,8}`` are the convolutions,
``main.{3,7,11}`` the batch norms, ``linear.{0,1,4}`` the head.

>>> module, variables = stir_jax.convert.from_sesn_model("mnist_xu_28", state_dict)
>>> logits = module.apply(variables, x)                  # x (B, 28, 28, 1) -> (B, 10)
"""
from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from stir_jax.layers.scale_pool import scale_pool
from stir_jax.layers.xu import XuSesnConv
from stir_jax.models import common as stir_common
from stir_jax.models.common import compute_input
from stir_jax.models.mnist_scale import common

SCALES = (0.3, 0.45, 0.67, 1.0, 1.49, 2.23, 3.33)
KERNEL_SIZE = 7
_TORCH_INDEX = {1: (0, 3), 2: (4, 7), 3: (8, 11)}  # layer -> (conv, batch norm) in ``main``


class MnistXu(stir_common.MnistBase):
  """``MNIST_XU_Pool`` (``mnist_xu_28``): (B, 28, 28, 1) -> (B, num_classes) logits.

  Attributes:
    num_classes: logits per sample.
    pool_size: the last max-pool's window (4; padding 2).
    scales: the kernel scale factors of every layer.
    impl: convolution algorithm, see `stir_jax.layers.conv.conv2d` (auto: FFT for the grouped
      layers on CPU).
    dtype, param_dtype, precision: as flax.linen.Conv (precision default "highest").
  """
  pool_size: int = 4
  scales: Sequence[float] = SCALES

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    """x: (batch, 28, 28, 1); train: batch statistics and dropout (needs a "dropout" rng)."""
    x = compute_input(x, self.dtype)
    scales = tuple(self.scales)
    for i, features in enumerate((common.C1, common.C2, common.C3), start=1):
      x = self.layer(XuSesnConv, features, KERNEL_SIZE, scales, 1 if i == 1 else len(scales),
                     name=f"conv{i}")(x)
      last = i == 3
      x = common.max_pool(nn.relu(x), self.pool_size if last else 2, 2 if last else 0)
      x = common.batch_norm(train, f"bn{i}", self.dtype, self.param_dtype)(x)
    b, h, w, _ = x.shape
    groups = jnp.moveaxis(x.reshape(b, h, w, len(scales), common.C3), 3, 1)
    x, _ = scale_pool(groups, "pixel")  # max over the scale groups, ties to the first
    return self.layer(common.Head, self.num_classes, name="head")(x, train)


def from_torch(state: dict) -> dict:
  """``MNIST_XU_Pool`` state dict -> ``{"params", "batch_stats"}``."""
  params, stats = {}, {}
  for i, (conv, bn) in _TORCH_INDEX.items():
    params[f"conv{i}"] = {
        "kernel": np.asarray(state[f"main.{conv}.weight"], np.float32).transpose(2, 3, 1, 0)}
    params[f"bn{i}"], stats[f"bn{i}"] = common.torch_bn(state, f"main.{bn}")
  params["head"], stats["head"] = common.head_from_torch(state)
  return {"params": params, "batch_stats": stats}
