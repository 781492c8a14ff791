"""Building blocks shared by the models: PyTorch-initialised convolutions and the classifier head.

Every model takes ``dtype`` (computation, None: inferred), ``param_dtype`` (float32) and
``precision`` (default "highest") with flax.linen.Conv's meanings (`stir_jax.layers.dtypes`) and
hands them to each of its layers; `compute_input` casts the images once on entry.
"""
from __future__ import annotations

from typing import Optional

import jax
import jax.numpy as jnp
import flax.linen as nn
import numpy as np

from stir_jax.layers.conv import conv2d
from stir_jax.layers.dtypes import DEFAULT_PRECISION, Dtype, PrecisionLike, canonical_precision
from stir_jax.layers.dtypes import promote_dtype
from stir_jax.layers.initializers import torch_uniform


class Conv(nn.Module):
  """A 2-D convolution with PyTorch's default initialisation (weights and bias U(+-1/sqrt(fan_in))).

  x (B, H, W, Cin) -> (B, H', W', features); dtype, param_dtype, precision as flax.linen.Conv
  (precision defaults to "highest").
  """
  features: int
  kernel_size: int = 7
  padding: str | int = "VALID"
  use_bias: bool = True
  impl: str = "auto"  # see stir_jax.layers.conv.conv2d
  dtype: Optional[Dtype] = None
  param_dtype: Dtype = jnp.float32
  precision: PrecisionLike = DEFAULT_PRECISION

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    k, cin = self.kernel_size, x.shape[-1]
    init = torch_uniform(cin * k * k)
    kernel = self.param("kernel", init, (k, k, cin, self.features), self.param_dtype)
    bias = (self.param("bias", init, (self.features,), self.param_dtype) if self.use_bias
            else None)
    x, kernel, bias = promote_dtype(x, kernel, bias, dtype=self.dtype)
    return conv2d(x, kernel, bias, self.padding, self.impl, precision=self.precision)


class Dense(nn.Module):
  """A dense layer with PyTorch's default initialisation: x (..., in) -> (..., features).

  dtype, param_dtype, precision as flax.linen.Dense (precision defaults to "highest").
  """
  features: int
  dtype: Optional[Dtype] = None
  param_dtype: Dtype = jnp.float32
  precision: PrecisionLike = DEFAULT_PRECISION

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    init = torch_uniform(x.shape[-1])
    kernel = self.param("kernel", init, (x.shape[-1], self.features), self.param_dtype)
    bias = self.param("bias", init, (self.features,), self.param_dtype)
    x, kernel, bias = promote_dtype(x, kernel, bias, dtype=self.dtype)
    return jnp.dot(x, kernel, precision=canonical_precision(self.precision)) + bias


def compute_input(x: jax.Array, dtype: Optional[Dtype]) -> jax.Array:
  """The images in the computation dtype (unchanged when dtype is None)."""
  return x if dtype is None else jnp.asarray(x, dtype)


def dtype_kwargs(module: nn.Module) -> dict:
  """A model's dtype, param_dtype and precision, to hand to its layers."""
  return {"dtype": module.dtype, "param_dtype": module.param_dtype,
          "precision": module.precision}


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
