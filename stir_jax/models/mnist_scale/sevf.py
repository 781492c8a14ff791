"""MNIST_SEVF_Scalar and MNIST_SEVF_Vector of the sesn repository: SEVF (Marcos et al. 2018) on
28x28 MNIST-scale digits.

Both use the layers of `stir_jax.layers.sevf` with 7x7 kernels, padding 3 and the reference's
scales ``1.26**i``, ``i = -4 .. 3`` (angles ``i * (2 pi / 3) / 7``), and the sesn head written as
1x1 convolutions (``fc1`` with a bias, see `common.Head`).

* `MnistSEVFScalar`: 3 x [scalar scale conv (1 -> 32 -> 63 -> 95) -> magnitude -> max-pool 2
  (the last 4, padding 2) -> BatchNorm2d (``bn1``, ``bn2``; none after the last pool)] -> head.
* `MnistSEVFVector`: scalar scale conv 1 -> 23 -> vector max-pool 2 -> vector batch norm; vector
  scale conv 23 -> 45 -> the same; vector scale conv 45 -> 68 -> vector max-pool 4 (padding 2) ->
  magnitude -> head.

Reference: ISosnovik/sesn (commit deaa16c), ``models/mnist_sevf.py`` (``mnist_sevf_scalar_28``,
``mnist_sevf_vector_28``) over ``models/impl/se_vector_fields.py``. The vector batch norm's
``weight`` is never read by the reference (zero gradient) and is not created here.

>>> module, variables = stir_jax.convert.from_sesn_model("mnist_sevf_vector_28", state_dict)
>>> logits = module.apply(variables, x)                  # x (B, 28, 28, 1) -> (B, 10)
"""
from __future__ import annotations


import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from stir_jax.layers.sevf import SEVFScalarConv, SEVFVectorConv, VectorBatchNorm, VectorMaxPool
from stir_jax.layers.sevf import vector_magnitude
from stir_jax.models.common import MnistBase
from stir_jax.models.mnist_scale import common

SCALAR_CHANNELS = (32, 63, 95)
VECTOR_CHANNELS = (23, 45, 68)
KERNEL_SIZE = 7
PADDING = 3


class _MnistSEVF(MnistBase):
  """Shared attributes of the two SEVF models.

  Attributes:
    num_classes: logits per sample.
    pool_size: the last max-pool's window (4; padding 2).
    impl: convolution algorithm, see `stir_jax.layers.conv.conv2d`.
    dtype, param_dtype, precision: as flax.linen.Conv (precision default "highest").
  """
  pool_size: int = 4

  def _conv(self, cls, features: int, name: str):
    return self.layer(cls, features, KERNEL_SIZE, PADDING, name=name)

  def _head(self, x: jax.Array, train: bool) -> jax.Array:
    return self.layer(common.Head, self.num_classes, hidden_bias=True, name="head")(x, train)

  def _input(self, x: jax.Array) -> jax.Array:
    return x if self.dtype is None else jnp.asarray(x, self.dtype)


class MnistSEVFScalar(_MnistSEVF):
  """``MNIST_SEVF_Scalar`` (``mnist_sevf_scalar_28``): (B, 28, 28, 1) -> (B, num_classes)."""

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    """x: (batch, 28, 28, 1); train: batch statistics and dropout (needs a "dropout" rng)."""
    x = self._input(x)
    for i, features in enumerate(SCALAR_CHANNELS, start=1):
      x = vector_magnitude(*self._conv(SEVFScalarConv, features, f"conv{i}")(x))
      if i < len(SCALAR_CHANNELS):
        x = common.max_pool(x, 2)
        x = common.batch_norm(train, f"bn{i}", self.dtype, self.param_dtype)(x)
      else:
        x = common.max_pool(x, self.pool_size, 2)
    return self._head(x, train)


class MnistSEVFVector(_MnistSEVF):
  """``MNIST_SEVF_Vector`` (``mnist_sevf_vector_28``): (B, 28, 28, 1) -> (B, num_classes)."""

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    """x: (batch, 28, 28, 1); train: batch statistics and dropout (needs a "dropout" rng)."""
    c1, c2, c3 = VECTOR_CHANNELS
    u, v = self._conv(SEVFScalarConv, c1, "conv1")(self._input(x))
    u, v = VectorBatchNorm(dtype=self.dtype, param_dtype=self.param_dtype, name="bn1")(
        *VectorMaxPool(2, dtype=self.dtype)(u, v), train=train)
    u, v = self._conv(SEVFVectorConv, c2, "conv2")(u, v)
    u, v = VectorBatchNorm(dtype=self.dtype, param_dtype=self.param_dtype, name="bn2")(
        *VectorMaxPool(2, dtype=self.dtype)(u, v), train=train)
    u, v = self._conv(SEVFVectorConv, c3, "conv3")(u, v)
    u, v = VectorMaxPool(self.pool_size, 2, dtype=self.dtype)(u, v)
    return self._head(vector_magnitude(u, v), train)


def _hwio(state: dict, name: str) -> np.ndarray:
  return np.asarray(state[name], np.float32).transpose(2, 3, 1, 0)


def from_torch_scalar(state: dict) -> dict:
  """``MNIST_SEVF_Scalar`` state dict -> ``{"params", "batch_stats"}``."""
  params = {f"conv{i}": {"kernel": _hwio(state, f"conv{i}.weight")} for i in (1, 2, 3)}
  stats = {}
  for name in ("bn1", "bn2"):
    params[name], stats[name] = common.torch_bn(state, name)
  params["head"], stats["head"] = common.conv_head_from_torch(state)
  return {"params": params, "batch_stats": stats}


def from_torch_vector(state: dict) -> dict:
  """``MNIST_SEVF_Vector`` state dict -> ``{"params", "batch_stats"}`` (the vector batch norms'
  unused ``weight`` dropped; their ``running_var`` (1, C, 1, 1) flattened)."""
  params = {"conv1": {"kernel": _hwio(state, "conv1.weight")}}
  for i in (2, 3):
    params[f"conv{i}"] = {"kernel_u": _hwio(state, f"conv{i}.weight_u"),
                          "kernel_v": _hwio(state, f"conv{i}.weight_v")}
  stats = {name: {"running_var": np.asarray(state[f"{name}.running_var"], np.float32).reshape(-1)}
           for name in ("bn1", "bn2")}
  params["head"], stats["head"] = common.conv_head_from_torch(state)
  return {"params": params, "batch_stats": stats}


def from_torch(state: dict) -> dict:
  """Either SEVF model's state dict -> ``{"params", "batch_stats"}`` (the vector model is the one
  with ``conv2.weight_u``)."""
  return from_torch_vector(state) if "conv2.weight_u" in state else from_torch_scalar(state)
