"""The SESN MNIST-scale models of Sosnovik, Szmaja & Smeulders ("Scale-Equivariant Steerable
Networks", ICLR 2020): ``MNIST_SES_Scalar`` and ``MNIST_SES_V`` as built by the factories
``mnist_ses_scalar_28`` and ``mnist_ses_vector_28`` of ISosnovik/sesn (commit deaa16c,
``models/mnist_ses.py``), on the layers of `stir_jax.layers.sesn`.

Both use Hermite basis "B" (`stir_jax.layers.sesn_basis.hermite_basis`, effective size 7, mult 1.5,
max order 4) with "same" padding, and the sesn head (`common.Head`) on the final (B, 2, 2, 95) map.

* `MnistSESScalar` (``mnist_ses_scalar_28``): 15x15 kernels, scales (1.7, 2.45, 3.54, 5.1);
  3 x [SESConv_Z2_H -> max over scales -> ReLU -> max-pool -> BatchNorm2d]; channels 32, 63, 95;
  the pools are 2, 2 and 4 with padding 2 (28 -> 14 -> 7 -> 2). Every layer lifts a plain image,
  so scale information is discarded between layers.
* `MnistSESVector` (``mnist_ses_vector_28``): 13x13 kernels, scales (1.5, 2.6, 4.5);
  SESConv_Z2_H -> ReLU -> MaxPool3d(1, 2, 2) -> BatchNorm3d; SESConv_H_H (scale size 1) -> same;
  SESConv_H_H -> max over scales -> ReLU -> max-pool 4 (padding 2) -> BatchNorm2d. The scale axis
  is kept until the last layer.

The factory's scales are ``round(min_scale * q**i, 2)`` with ``q = factor ** (1 / (n - 1))``
(`factory_scales`). The max over scales sends a tie's gradient to the first (smallest) scale, as
PyTorch's ``max`` does (`stir_jax.layers.scale_pool` "pixel").

Parameters mirror the PyTorch state dict, named after the ``nn.Sequential`` index: ``main0``
(conv), ``main4`` (batch norm) ... and the head ``linear`` (``linear0``, ``linear1``, ``linear4``);
`from_torch` converts a state dict (the bases are recomputed, not read). Checked against the
authors' outputs and gradients (tests/fixtures/peers/model_mnist_ses_*_28.npz,
tests/models/test_mnist_sesn_dss.py).

>>> module, variables = stir_jax.convert.from_sesn_model("mnist_ses_scalar_28", state_dict)
>>> module.apply(variables, x).shape                      # x (B, 28, 28, 1)
(B, 10)
"""
from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import numpy as np

from stir_jax.layers.scale_pool import scale_pool
from stir_jax.layers.sesn import SESConvHH, SESConvZ2H
from stir_jax.layers.sesn_basis import hermite_basis
from stir_jax.models.common import MnistBase, compute_input
from stir_jax.models.mnist_scale.common import C1, C2, C3, Head, batch_norm, head_from_torch
from stir_jax.models.mnist_scale.common import max_pool, torch_bn

EFFECTIVE_SIZE, MULT, MAX_ORDER = 7, 1.5, 4
# Sequential indices of the convolutions and of the batch norms in the PyTorch models.
SCALAR_LAYERS = ((0, 5, 10), (4, 9, 14))
VECTOR_LAYERS = ((0, 4, 8), (3, 7, 12))


def factory_scales(num_scales: int, factor: float, min_scale: float) -> tuple[float, ...]:
  """The sesn factories' scales: ``round(min_scale * q**i, 2)``, ``q = factor**(1/(n-1))``.

  >>> factory_scales(4, 3.0, 1.7)
  (1.7, 2.45, 3.54, 5.1)
  """
  q = factor**(1 / (num_scales - 1))
  return tuple(round(min_scale * q**i, 2) for i in range(num_scales))


def scale_max(x: jax.Array) -> jax.Array:
  """Max over the scale axis of (B, S, H, W, C); a tie's gradient goes to the first scale."""
  return scale_pool(x, "pixel")[0]


class _MnistSES(MnistBase):
  """Shared fields (`stir_jax.models.common.MnistBase` and these); subclasses define the body."""
  kernel_size: int = 15
  scales: Sequence[float] = factory_scales(4, 3.0, 1.7)

  def _basis(self) -> np.ndarray:
    return hermite_basis(self.kernel_size, self.scales, EFFECTIVE_SIZE, MULT, MAX_ORDER)

  def _conv(self, cls, features: int, name: str, **kwargs) -> nn.Module:
    return self.layer(cls, features, self._basis(), padding=self.kernel_size // 2, name=name,
                      **kwargs)

  def _bn(self, train: bool, name: str) -> nn.BatchNorm:
    return batch_norm(train, name, self.dtype, self.param_dtype)


class MnistSESScalar(_MnistSES):
  """``MNIST_SES_Scalar`` of ``mnist_ses_scalar_28``: (B, 28, 28, 1) -> (B, num_classes) logits.

  Attributes:
    kernel_size: kernel support (15); "same" padding ``kernel_size // 2``.
    scales: basis scales (1.7, 2.45, 3.54, 5.1).
    num_classes: logits per sample.
    impl: convolution algorithm, see `stir_jax.layers.conv.conv2d`.
    dtype, param_dtype, precision: as flax.linen.Conv (precision default "highest").
  """

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    x = compute_input(x, self.dtype)
    pools = ((2, 0), (2, 0), (4, 2))  # (window, padding): 28 -> 14 -> 7 -> 2
    for conv, bn, features, pool in zip(*SCALAR_LAYERS, (C1, C2, C3), pools):
      x = scale_max(self._conv(SESConvZ2H, features, f"main{conv}")(x))
      x = self._bn(train, f"main{bn}")(max_pool(nn.relu(x), *pool))
    return self.layer(Head, self.num_classes, name="linear")(x, train)


class MnistSESVector(_MnistSES):
  """``MNIST_SES_V`` of ``mnist_ses_vector_28``: (B, 28, 28, 1) -> (B, num_classes) logits.

  Attributes: as `MnistSESScalar`, with defaults kernel_size 13, scales (1.5, 2.6, 4.5).
  """
  kernel_size: int = 13
  scales: Sequence[float] = factory_scales(3, 3.0, 1.5)

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    x = compute_input(x, self.dtype)
    x = self._conv(SESConvZ2H, C1, "main0")(x)                        # (B, S, 28, 28, C1)
    x = self._bn(train, "main3")(max_pool(nn.relu(x), 2))
    x = self._conv(SESConvHH, C2, "main4", scale_size=1)(x)
    x = self._bn(train, "main7")(max_pool(nn.relu(x), 2))
    x = scale_max(self._conv(SESConvHH, C3, "main8", scale_size=1)(x))
    x = self._bn(train, "main12")(max_pool(nn.relu(x), 4, 2))         # (B, 2, 2, C3)
    return self.layer(Head, self.num_classes, name="linear")(x, train)


def from_torch(state: dict) -> dict:
  """A PyTorch state dict of either model (numpy arrays) -> ``{"params", "batch_stats"}``.

  Conv ``weight`` (O, I, F) / (O, I, 1, F) and ``bias`` keep their layout; ``main.<i>`` becomes
  ``main<i>``; the ``main.*.basis`` buffers and ``num_batches_tracked`` are skipped. The model is
  recognised by its layer names (``MNIST_SES_V`` has a conv at ``main.8``).
  """
  convs, bns = VECTOR_LAYERS if "main.8.weight" in state else SCALAR_LAYERS
  head_params, head_stats = head_from_torch(state)
  params, stats = {"linear": head_params}, {"linear": head_stats}
  for i in convs:
    params[f"main{i}"] = {k: np.asarray(state[f"main.{i}.{k}"], np.float32)
                          for k in ("weight", "bias")}
  for i in bns:
    params[f"main{i}"], stats[f"main{i}"] = torch_bn(state, f"main.{i}")
  return {"params": params, "batch_stats": stats}
