"""A run's orbax checkpoints (checkpoints/latest for resuming, checkpoints/best for the best
validation accuracy); the rest of the run directory is `stir_jax.rundir`, which needs no orbax."""
from __future__ import annotations

import pathlib
from typing import Any

import orbax.checkpoint as ocp

from stir_jax.rundir import RunError


class Checkpoints:
  """The run's two orbax checkpoint managers: latest full state (resume) and best parameters.

  Trees are host (numpy) copies; with several processes every process calls save and restore
  (orbax lines them up and writes replicated numpy arrays once, from process 0).
  """

  def __init__(self, workdir: pathlib.Path):
    opts = ocp.CheckpointManagerOptions(max_to_keep=1, enable_async_checkpointing=False)
    self.latest = ocp.CheckpointManager((workdir / "checkpoints" / "latest").absolute(),
                                        options=opts, item_names=("state", "meta"))
    self.best = ocp.CheckpointManager((workdir / "checkpoints" / "best").absolute(),
                                      options=opts, item_names=("params", "meta", "batch_stats"))

  def save_latest(self, epoch: int, state, meta: dict) -> None:
    self.latest.save(epoch, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                    meta=ocp.args.JsonSave(meta)))
    self.latest.wait_until_finished()

  def restore_latest(self, target) -> tuple[Any, dict] | None:
    step = self.latest.latest_step()
    if step is None:
      return None
    got = self.latest.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(target), meta=ocp.args.JsonRestore()))
    return got["state"], got["meta"]

  def save_best(self, epoch: int, params, meta: dict, batch_stats=None) -> None:
    """The best parameters so far; `batch_stats` too for models with batch norm."""
    for stale in [s for s in self.best.all_steps() if s >= epoch]:
      self.best.delete(stale)  # left by a run killed between its best and latest saves
    items = {"params": ocp.args.StandardSave(params), "meta": ocp.args.JsonSave(meta)}
    if batch_stats is not None:
      items["batch_stats"] = ocp.args.StandardSave(batch_stats)
    self.best.save(epoch, args=ocp.args.Composite(**items))
    self.best.wait_until_finished()

  def restore_best(self, target_params) -> tuple[Any, dict]:
    step = self.best.latest_step()
    if step is None:
      raise RunError("the run has no best checkpoint yet")
    got = self.best.restore(step, args=ocp.args.Composite(
        params=ocp.args.StandardRestore(target_params), meta=ocp.args.JsonRestore()))
    return got["params"], got["meta"]

  def restore_best_batch_stats(self, target):
    """The batch_stats saved with the best parameters (models with batch norm)."""
    step = self.best.latest_step()
    if step is None:
      raise RunError("the run has no best checkpoint yet")
    if not (self.best.directory / str(step) / "batch_stats").exists():
      raise RunError(f"the best checkpoint (epoch {step}) holds no batch_stats")
    got = self.best.restore(step, args=ocp.args.Composite(
        batch_stats=ocp.args.StandardRestore(target)))
    return got["batch_stats"]

  def close(self) -> None:
    self.latest.close()
    self.best.close()
