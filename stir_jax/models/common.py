"""Building blocks shared by the models: PyTorch-initialised convolutions and the classifier head."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import flax.linen as nn
import numpy as np

from stir_jax.layers.conv import conv2d
from stir_jax.layers.initializers import torch_uniform


class Conv(nn.Module):
  """A 2-D convolution with PyTorch's default initialisation (weights and bias U(+-1/sqrt(fan_in)))."""
  features: int
  kernel_size: int = 7
  padding: str | int = "VALID"
  use_bias: bool = True
  impl: str = "auto"  # see stir_jax.layers.conv.conv2d

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    k, cin = self.kernel_size, x.shape[-1]
    init = torch_uniform(cin * k * k)
    kernel = self.param("kernel", init, (k, k, cin, self.features))
    bias = self.param("bias", init, (self.features,)) if self.use_bias else None
    return conv2d(x, kernel, bias, self.padding, self.impl)


class Dense(nn.Module):
  """A dense layer with PyTorch's default initialisation: x (..., in) -> (..., features)."""
  features: int

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    init = torch_uniform(x.shape[-1])
    kernel = self.param("kernel", init, (x.shape[-1], self.features))
    bias = self.param("bias", init, (self.features,))
    return x @ kernel + bias


def global_max(x: jax.Array) -> jax.Array:
  """Max over every axis but the first (batch) and the last (channels): (B, ..., C) -> (B, C)."""
  return jnp.max(x, axis=tuple(range(1, x.ndim - 1)))


# --- conversion of reference (PyTorch) state dicts -------------------------------------------

def torch_conv(state: dict, name: str, weight_key: str = "weight") -> dict:
  """OIHW conv weight + bias from a reference state dict -> {'kernel': HWIO, 'bias'}."""
  out = {"kernel": np.asarray(state[f"{name}.{weight_key}"]).transpose(2, 3, 1, 0)}
  if f"{name}.bias" in state:
    out["bias"] = np.asarray(state[f"{name}.bias"])
  return out


def torch_dense(state: dict, name: str) -> dict:
  """(out, in) linear weight + bias -> {'kernel': (in, out), 'bias'}."""
  return {"kernel": np.asarray(state[f"{name}.weight"]).T,
          "bias": np.asarray(state[f"{name}.bias"])}
