"""What the NNX twins share: keeping NumPy constants out of the state, checking channel counts and
the PyTorch-initialised kernel and bias of the conv twins."""
from __future__ import annotations

from typing import Optional

from flax import nnx
import jax
import numpy as np

from stir_jax.layers.initializers import torch_uniform


class Constant:
  """A read-only NumPy array held by a module as a static attribute: never a parameter, never in
  ``nnx.state`` (a bare NumPy attribute would be a state leaf, traced by ``nnx.jit``)."""
  __slots__ = ("array",)

  def __init__(self, array) -> None:
    array = np.array(array)
    array.setflags(write=False)
    self.array = array

  def __repr__(self) -> str:
    return f"Constant(shape={self.array.shape}, dtype={self.array.dtype})"


def check_channels(layer: str, x: jax.Array, expected: int) -> None:
  """A ValueError naming the layer when ``x``'s last axis is not ``expected`` channels."""
  if x.shape[-1] != expected:
    raise ValueError(f"{layer} was built for {expected} input channels, got an input of shape "
                     f"{x.shape}")


def conv_params(rngs, in_features: int, out_features: int, kernel_size: int, param_dtype,
                use_bias: bool = True):
  """(kernel (k, k, in, out), bias (out,) or None) as nnx.Params with PyTorch's conv initialisation
  (U(+-1/sqrt(in * k * k))), the initialisation of the Linen twins."""
  k = kernel_size
  init = torch_uniform(in_features * k * k)
  kernel = nnx.Param(init(rngs.params(), (k, k, in_features, out_features), param_dtype))
  bias = nnx.Param(init(rngs.params(), (out_features,), param_dtype)) if use_bias else None
  return kernel, bias


def divided(layer: str, in_features: int, groups: int, what: str) -> int:
  """``in_features // groups``, or a ValueError when ``groups`` does not divide it."""
  if in_features % groups:
    raise ValueError(f"{layer}: in_features={in_features} is not a multiple of {what}={groups}")
  return in_features // groups


def first(value: Optional[bool], default: bool) -> bool:
  return default if value is None else value
