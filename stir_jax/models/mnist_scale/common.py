"""Pieces shared by the MNIST-scale models: PyTorch batch norm and the sesn repository's head.

Batch norm follows PyTorch (eps 1e-5, running statistics updated with momentum 0.1, i.e. flax's
momentum 0.9). One difference in train mode: PyTorch updates running_var with the unbiased batch
variance, flax with the biased one (a factor n/(n-1), 1.0001 at batch 128 x 28 x 28 positions and
1.008 for the head's batch of 128). Eval mode, which the fixtures check, is identical. Training
through stir_jax.train replaces train-mode batch norm by `stir_jax.train.global_batch.batch_norm`,
which updates running_var with the unbiased variance, as PyTorch does.
"""
from __future__ import annotations

from typing import Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from stir_jax.layers.dtypes import DEFAULT_PRECISION, Dtype, PrecisionLike, canonical_precision
from stir_jax.layers.dtypes import promote_dtype
from stir_jax.layers.initializers import torch_uniform

C1, C2, C3 = 32, 63, 95  # the channel widths of every MNIST-scale model in the sesn repository
HIDDEN = 256
DROPOUT = 0.7


def batch_norm(train: bool, name: str, dtype: Optional[Dtype] = None,
               param_dtype: Dtype = jnp.float32) -> nn.BatchNorm:
  """PyTorch BatchNorm{1,2,3}d over the last (channel) axis of a channels-last tensor."""
  return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, axis=-1,
                      dtype=dtype, param_dtype=param_dtype, name=name)


def max_pool(x: jax.Array, window: int = 2, padding: int = 0) -> jax.Array:
  """PyTorch MaxPool2d(window, stride=window, padding) over (H, W) of (..., H, W, C): pads with
  -inf, floors the output size, and sends a tie's gradient to one element (reduce_window)."""
  pads = ((padding, padding), (padding, padding))  # flax pads the window dimensions only
  lead = x.ndim - 3
  return nn.max_pool(x.reshape((-1,) + x.shape[lead:]), (window, window), (window, window),
                     pads).reshape(x.shape[:lead] + ((x.shape[-3] + 2 * padding) // window,
                                                      (x.shape[-2] + 2 * padding) // window,
                                                      x.shape[-1]))


def torch_flatten(x: jax.Array) -> jax.Array:
  """(B, H, W, C) -> (B, C*H*W) in PyTorch's (C, H, W) order, so Linear weights keep their layout."""
  return jnp.transpose(x, (0, 3, 1, 2)).reshape(x.shape[0], -1)


class Linear(nn.Module):
  """PyTorch nn.Linear with its default init; ``kernel`` is stored (in, out)."""
  features: int
  use_bias: bool = True
  dtype: Optional[Dtype] = None
  param_dtype: Dtype = jnp.float32
  precision: PrecisionLike = DEFAULT_PRECISION

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    init = torch_uniform(x.shape[-1])
    kernel = self.param("kernel", init, (x.shape[-1], self.features), self.param_dtype)
    bias = self.param("bias", init, (self.features,), self.param_dtype) if self.use_bias else None
    x, kernel, bias = promote_dtype(x, kernel, bias, dtype=self.dtype)
    y = jnp.dot(x, kernel, precision=canonical_precision(self.precision))
    return y if bias is None else y + bias


class Head(nn.Module):
  """The sesn MNIST head on a (B, 2, 2, C3) map: flatten (PyTorch order), Linear(4*C3 -> 256, no
  bias), BatchNorm1d, ReLU, Dropout(0.7), Linear(256 -> num_classes).

  SS-CNN and SEVF write it as 1x1 convolutions on the flattened (B, 4*C3, 1, 1) map (``fc1``,
  ``fc1bn``, ``fc2``): the same function, except that their ``fc1`` has a bias
  (``hidden_bias=True``; convert with `conv_head_from_torch`)."""
  num_classes: int = 10
  hidden_bias: bool = False
  dtype: Optional[Dtype] = None
  param_dtype: Dtype = jnp.float32
  precision: PrecisionLike = DEFAULT_PRECISION

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    dt = {"dtype": self.dtype, "param_dtype": self.param_dtype}
    x = Linear(HIDDEN, use_bias=self.hidden_bias, precision=self.precision, name="linear0",
               **dt)(torch_flatten(x))
    x = nn.relu(batch_norm(train, "linear1", **dt)(x))
    x = nn.Dropout(DROPOUT, deterministic=not train)(x)
    return Linear(self.num_classes, precision=self.precision, name="linear4", **dt)(x)


# --- state-dict conversion -------------------------------------------------------------------

def torch_bn(state: dict, name: str) -> tuple[dict, dict]:
  """PyTorch BatchNorm ``name`` -> ({'scale', 'bias'}, {'mean', 'var'})."""
  f = lambda k: np.asarray(state[f"{name}.{k}"], np.float32)
  return ({"scale": f("weight"), "bias": f("bias")},
          {"mean": f("running_mean"), "var": f("running_var")})


def torch_linear(state: dict, name: str) -> dict:
  out = {"kernel": np.asarray(state[f"{name}.weight"], np.float32).T}
  if f"{name}.bias" in state:
    out["bias"] = np.asarray(state[f"{name}.bias"], np.float32)
  return out


def head_from_torch(state: dict, prefix: str = "linear") -> tuple[dict, dict]:
  """The head's params and batch_stats from the sesn state dict (``linear.0``, ``.1``, ``.4``)."""
  bn_p, bn_s = torch_bn(state, f"{prefix}.1")
  return ({"linear0": torch_linear(state, f"{prefix}.0"), "linear1": bn_p,
           "linear4": torch_linear(state, f"{prefix}.4")}, {"linear1": bn_s})


def conv_head_from_torch(state: dict, fc1: str = "fc1", bn: str = "fc1bn",
                         fc2: str = "fc2") -> tuple[dict, dict]:
  """`Head(hidden_bias=True)` params and batch_stats from the 1x1-conv head of SS-CNN and SEVF
  (``fc1`` (256, 4*C3, 1, 1) + bias, BatchNorm2d ``fc1bn``, ``fc2`` (10, 256, 1, 1) + bias)."""
  linear = lambda name: {"kernel": np.asarray(state[f"{name}.weight"], np.float32)[:, :, 0, 0].T,
                         "bias": np.asarray(state[f"{name}.bias"], np.float32)}
  bn_p, bn_s = torch_bn(state, bn)
  return ({"linear0": linear(fc1), "linear1": bn_p, "linear4": linear(fc2)}, {"linear1": bn_s})
