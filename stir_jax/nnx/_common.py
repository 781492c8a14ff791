"""What the NNX twins share: keeping NumPy constants out of the state, checking channel counts and
naming SiConv's interpolation keyword as the pure functions name it."""
from __future__ import annotations

import inspect
from typing import Callable, Optional

import jax
import numpy as np


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


def interpolation_keyword(fn: Callable) -> str:
  """The keyword ``fn`` takes the kernel interpolation under: ``interpolation`` where it has one,
  else ``mode`` (the layers' older name)."""
  return "interpolation" if "interpolation" in inspect.signature(fn).parameters else "mode"


def divided(layer: str, in_features: int, groups: int, what: str) -> int:
  """``in_features // groups``, or a ValueError when ``groups`` does not divide it."""
  if in_features % groups:
    raise ValueError(f"{layer}: in_features={in_features} is not a multiple of {what}={groups}")
  return in_features // groups


def first(value: Optional[bool], default: bool) -> bool:
  return default if value is None else value
