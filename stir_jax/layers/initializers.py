"""Parameter initialisers matching the reference (PyTorch) defaults.

PyTorch's ``nn.Conv2d``/``nn.Linear`` draw weights with kaiming-uniform (a = sqrt(5)), which is
``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``, and biases from the same range. The models use these so that
training starts from the same distribution as the paper's runs.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp


def torch_uniform(fan_in: int):
  """Initialiser drawing U(-1/sqrt(fan_in), 1/sqrt(fan_in)) of any shape."""
  bound = 1.0 / math.sqrt(fan_in)

  def init(key: jax.Array, shape, dtype=jnp.float32) -> jax.Array:
    return jax.random.uniform(key, shape, dtype, -bound, bound)

  return init
