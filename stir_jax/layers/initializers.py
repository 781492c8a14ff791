"""Parameter initialisers matching the reference (PyTorch) defaults.

PyTorch's ``nn.Conv2d``/``nn.Linear`` draw weights with kaiming-uniform (a = sqrt(5)), which is
``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``, and biases from the same range. The models use these so that
training starts from the same distribution as the paper's runs.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp


def _threefry(key: jax.Array) -> bool:
  """Whether key draws with threefry2x32 (a typed key of that impl, or a raw uint32 key under the
  default impl)."""
  if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
    return str(jax.random.key_impl(key)) == "threefry2x32"
  return jax.config.jax_default_prng_impl == "threefry2x32"


def torch_uniform(fan_in: int):
  """Initialiser drawing U(-1/sqrt(fan_in), 1/sqrt(fan_in)) of any shape.

  With a threefry key the values are drawn flat and reshaped: threefry's bits depend only on the
  flat index (in both of jax's threefry modes), so they equal ``jax.random.uniform(key, shape)``
  exactly, and an eager draw compiles one 1-D kernel, several times faster to compile than a
  kernel of the parameter's rank (tests/layers/test_forms.py checks the equality).
  """
  bound = 1.0 / math.sqrt(fan_in)

  def init(key: jax.Array, shape, dtype=jnp.float32) -> jax.Array:
    shape = tuple(shape)
    if len(shape) > 1 and _threefry(key):
      return jax.random.uniform(key, (math.prod(shape),), dtype, -bound, bound).reshape(shape)
    return jax.random.uniform(key, shape, dtype, -bound, bound)

  return init
