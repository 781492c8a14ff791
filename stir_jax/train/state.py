"""The train state, the optimiser and the model a config names."""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import struct

from stir_jax import experiment, models
from stir_jax.experiment import build_model  # pylint: disable=unused-import  (the engine's name)
from stir_jax.errors import RunError

# The fields a checkpoint holds only when they are set (STIR models have no batch statistics and
# no dropout, and their checkpoints keep the three original fields).
OPTIONAL_FIELDS = ("batch_stats", "rng")


@struct.dataclass
class TrainState:
  """step, params, opt_state; for models with a train mode (batch norm, dropout) also
  batch_stats (flax's "batch_stats" collection, updated by every train step) and rng (the base key
  of the dropout masks: step s uses fold_in(rng, s))."""
  step: jax.Array
  params: Any
  opt_state: Any
  batch_stats: Any = struct.field(default_factory=dict)
  rng: Any = None


def has_train_mode(name: str) -> bool:
  """Whether model `name` is called with ``train=True`` when training (batch norm and dropout,
  the MNIST-scale family) rather than like the STIR models (parameters only)."""
  return models.lookup(name).train_mode


def make_optimizer(optimizer, steps_per_epoch: int | None = None) -> optax.GradientTransformation:
  """Adam with the learning rate of `optimizer` (an `experiment.Optimizer`, an `Experiment`, or a
  config; PyTorch's Adam defaults: b1 .9, b2 .999, eps 1e-8).

  lr_decay_epochs (e.g. (20, 40)) multiplies the rate by lr_decay_factor after each of those
  epochs, as PyTorch's MultiStepLR stepped once per epoch: with (20, 40) and 0.1, epochs 1-20
  train at lr, 21-40 at lr / 10, 41- at lr / 100. That needs `steps_per_epoch`.
  """
  if isinstance(optimizer, experiment.Experiment):
    optimizer = optimizer.optimizer
  elif not isinstance(optimizer, experiment.Optimizer):
    optimizer = experiment.from_config(optimizer).optimizer
  epochs = list(optimizer.lr_decay_epochs)
  if not epochs:
    return optax.adam(optimizer.learning_rate)
  if not steps_per_epoch:
    raise RunError("lr_decay_epochs needs the number of steps per epoch")
  schedule = optax.piecewise_constant_schedule(
      optimizer.learning_rate, {e * steps_per_epoch: optimizer.lr_decay_factor for e in epochs})
  return optax.adam(schedule)


def create_train_state(model, tx, rng: jax.Array, num_channels: int, image_size: int = 64,
                       train_mode: bool = False) -> TrainState:
  """A fresh state for one seed, the model initialised on (1, image_size, image_size,
  num_channels) images. With `train_mode` it also holds the model's batch_stats and the dropout
  key. Jitted: run eagerly, the SiConv models' scale loops take about a minute to initialise."""
  variables = jax.jit(model.init)(
      rng, jnp.zeros((1, image_size, image_size, num_channels), jnp.float32))
  params = variables["params"]
  extra = {}
  if train_mode:
    extra = {"batch_stats": variables.get("batch_stats", {}),
             "rng": jax.random.fold_in(rng, 1)}  # a stream apart from the initialisation's
  return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params),
                    **extra)


def checkpoint_tree(state: TrainState) -> dict:
  """The state as the checkpoint stores it: step, params, opt_state, and the optional fields that
  are set. (A STIR state gives the tree its checkpoints always had, so old runs resume.)"""
  tree = {"step": state.step, "params": state.params, "opt_state": state.opt_state}
  for name in OPTIONAL_FIELDS:
    value = getattr(state, name)
    if value is not None and jax.tree.leaves(value):
      tree[name] = value
  return tree


def from_checkpoint_tree(template: TrainState, tree: dict) -> TrainState:
  """`template` with the fields of a restored `checkpoint_tree`."""
  return template.replace(**tree)
