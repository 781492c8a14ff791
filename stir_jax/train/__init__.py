"""Training: one engine for one seed or many, one device or many, one host or many.

  state.py        TrainState, the optimiser, the model a config names
  steps.py        the pure per-device train and evaluation steps (psum over the data axis)
  global_batch.py train-mode batch norm and dropout over the global batch (models with a train mode)
  placement.py    the (seed, data) mesh: where arrays live, the steps compiled over it (jit or pmap)
  inputs.py       the run's data: this process's part of every global batch
  rundir.py       the run directory: config, metrics, checkpoints, results; RunError
  engine.py       the loop: `train_and_evaluate(config, workdir)`, `train_seeds(config, dirs)`
  distributed.py  several processes: `initialize()`, who writes, barriers
"""
from stir_jax.train.engine import train_and_evaluate, train_seeds
from stir_jax.errors import RunError

__all__ = ["RunError", "train_and_evaluate", "train_seeds"]
