"""What an experiment turns into before any run: the model, the optimiser, the step functions and
their compiled, placed versions. The engine, the sweep's cost probe and the benchmarks build their
steps here, so they time and train the same program.

>>> prog = program.build(exp, num_channels=1, num_classes=36, steps_per_epoch=108)
>>> placement, train_step, eval_step = prog.placed(num_seeds=1)
>>> state = prog.init_state(seed=1)          # host TrainState of one seed
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable

import jax

from stir_jax import experiment
from stir_jax.data import splits
from stir_jax.train import state as state_lib, steps
from stir_jax.train.placement import Placement


@dataclasses.dataclass
class Program:
  """The compiled pieces of one experiment at one data shape (channels, classes, image size)."""
  exp: experiment.Experiment
  model: Any
  tx: Any
  num_channels: int
  image_size: int
  train_mode: bool
  steps_per_epoch: int
  train_fn: Callable
  eval_fn: Callable
  _placed: dict = dataclasses.field(default_factory=dict)

  def placed(self, num_seeds: int, devices=None) -> tuple[Placement, Callable, Callable]:
    """(placement, jitted train step, jitted eval step) for num_seeds seeds trained together
    (built once per number of seeds and devices)."""
    key = (num_seeds, None if devices is None else tuple(devices))
    if key not in self._placed:
      runtime = self.exp.runtime
      p = Placement(num_seeds, runtime.parallelism, runtime.seed_batching, devices=devices)
      p.check_global_batch(self.exp.protocol.batch_size)
      self._placed[key] = (p, p.train_step(self.train_fn), p.eval_step(self.eval_fn))
    return self._placed[key]

  def init_state(self, seed: int):
    """A fresh host (numpy) train state of one seed."""
    return jax.device_get(state_lib.create_train_state(
        self.model, self.tx, jax.random.PRNGKey(seed), self.num_channels, self.image_size,
        self.train_mode))

  def eval_variables(self, state):
    """What the eval step takes: params, or {"params", "batch_stats"} (train-mode models)."""
    if self.train_mode:
      return {"params": state.params, "batch_stats": state.batch_stats}
    return state.params


def build(exp: experiment.Experiment, *, num_channels: int, num_classes: int,
          steps_per_epoch: int, image_size: int = 64, model=None, tx=None) -> Program:
  """The program of `exp` for data of this shape; `model` and `tx` replace the experiment's
  (benchmarks that time one form of a model)."""
  if model is None:
    from stir_jax import models  # pylint: disable=g-import-not-at-top
    m = exp.model
    model = models.build(m.name, num_channels=num_channels, num_classes=num_classes,
                         kernel_size=m.kernel_size, interpolation=m.interpolation,
                         dtype=m.dtype, precision=m.precision, impl=m.impl)
  if tx is None:
    tx = state_lib.make_optimizer(exp.optimizer, steps_per_epoch)
  train_mode = state_lib.has_train_mode(exp.model.name)
  norm = exp.data.input_norm
  return Program(exp, model, tx, num_channels, image_size, train_mode, steps_per_epoch,
                 steps.train_step_fn(model, tx, train_mode=train_mode, input_norm=norm),
                 steps.eval_step_fn(model, with_batch_stats=train_mode, input_norm=norm))


def for_data(exp: experiment.Experiment, data) -> Program:
  """The program of `exp` on loaded data (its shape, its epoch length), the model checked against
  the data (`experiment.build_model`)."""
  steps_per_epoch = math.ceil(
      splits.num_train_examples(data, exp.data.scenario) / exp.protocol.batch_size)
  return build(exp, num_channels=data.num_channels, num_classes=data.num_classes,
               steps_per_epoch=steps_per_epoch, image_size=splits.image_size(data),
               model=experiment.build_model(exp, data))
