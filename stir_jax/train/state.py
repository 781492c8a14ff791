"""The train state, the optimiser and the model a config names."""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax import struct

from stir_jax import models
from stir_jax.train.rundir import RunError


@struct.dataclass
class TrainState:
  step: jax.Array
  params: Any
  opt_state: Any


def make_optimizer(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
  """Adam with the config's learning rate (PyTorch's Adam defaults: b1 .9, b2 .999, eps 1e-8)."""
  return optax.adam(config.learning_rate)


def create_train_state(model, tx, rng: jax.Array, num_channels: int) -> TrainState:
  """A fresh state for one seed. Jitted: run eagerly, the SiConv models' scale loops take about a
  minute to initialise."""
  params = jax.jit(model.init)(rng, jnp.zeros((1, 64, 64, num_channels), jnp.float32))["params"]
  return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params))


def takes_impl(name: str) -> bool:
  """Whether the model takes an `impl` argument (the SiConv models)."""
  return name in ("pixel_pool", "slice_pool", "energy_pool", "soft_pool", "conv3d")


def build_model(config, data):
  """The config's model for the data's channel and class counts, in the config's computation dtype
  and precision (config.dtype, config.precision; RunError on a bad name or value)."""
  try:
    return models.get_model(config.model, data.num_channels, data.num_classes,
                            config.kernel_size, config.interpolation,
                            dtype=config.get("dtype", "float32"),
                            precision=config.get("precision", "highest"),
                            **({"impl": config.impl} if takes_impl(config.model) else {}))
  except (ValueError, TypeError) as e:
    raise RunError(str(e)) from None
