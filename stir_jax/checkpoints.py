"""A run's orbax checkpoints (checkpoints/latest for resuming, checkpoints/best for the best
validation accuracy); the rest of the run directory is `stir_jax.rundir`, which needs no orbax.

checkpoints/latest keeps the two newest saves, each named by the optimiser step it was taken at
(runs from before mid-epoch saves name them by epoch; both count up), and its meta says where in
training it is (`position`: the epoch in progress, the step inside it and the partial epoch's
metric sums; absent or step 0: the end of meta["epoch"]). A save is written to a temporary
directory and renamed when complete (orbax), so a process killed while saving leaves the earlier
saves intact. A save that does not restore (truncated, half written, unreadable) is reported in one
warning line, set aside as `broken-<step>` and the next older one restored.
"""
from __future__ import annotations

import contextlib
import logging as py_logging
import pathlib
import sys
from typing import Any, Callable

import orbax.checkpoint as ocp
from absl import logging

from stir_jax.errors import RunError

KEEP_LATEST = 2


def _reason(e: BaseException) -> str:
  first = next((line.strip() for line in str(e).splitlines() if line.strip()), "")
  text = f"{type(e).__name__}: {first}" if first else type(e).__name__
  return text if len(text) <= 160 else text[:157] + "..."


@contextlib.contextmanager
def _quiet():
  """No orbax / asyncio log lines while a restore is tried (its failure is reported in one)."""
  verbosity = logging.get_verbosity()
  loggers = [py_logging.getLogger(n) for n in ("asyncio", "absl", "orbax", "jax")]
  levels = [lg.level for lg in loggers]
  logging.set_verbosity(logging.FATAL)
  for lg in loggers:
    lg.setLevel(py_logging.CRITICAL + 1)
  try:
    yield
  finally:
    logging.set_verbosity(verbosity)
    for lg, level in zip(loggers, levels):
      lg.setLevel(level)


def warn(message: str) -> None:
  print(f"warning: {message}", file=sys.stderr, flush=True)


class Checkpoints:
  """The run's two orbax checkpoint managers: latest full state (resume) and best parameters.

  Trees are host (numpy) copies; with several processes every process calls save and restore
  (orbax lines them up and writes replicated numpy arrays once, from process 0).
  """

  def __init__(self, workdir: pathlib.Path, main: bool = True,
               barrier: Callable[[str], None] | None = None):
    self.workdir = workdir
    self.main = main
    self.barrier = barrier or (lambda name: None)
    opts = ocp.CheckpointManagerOptions(max_to_keep=KEEP_LATEST, enable_async_checkpointing=False)
    self.latest = ocp.CheckpointManager((workdir / "checkpoints" / "latest").absolute(),
                                        options=opts, item_names=("state", "meta"))
    best_opts = ocp.CheckpointManagerOptions(max_to_keep=1, enable_async_checkpointing=False)
    self.best = ocp.CheckpointManager((workdir / "checkpoints" / "best").absolute(),
                                      options=best_opts,
                                      item_names=("params", "meta", "batch_stats"))

  # -- latest ----------------------------------------------------------------------------------
  def save_latest(self, step: int, state, meta: dict) -> None:
    """The full state after optimiser step `step` (a key that only grows) with its meta."""
    if step in self.latest.all_steps():
      return  # the same position saved already (e.g. a preemption right after a timed save)
    self.latest.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                   meta=ocp.args.JsonSave(meta)))
    self.latest.wait_until_finished()

  def restore_latest(self, target, on_broken: str = "restart") -> tuple[Any, dict] | None:
    """(state tree, meta) of the newest save that restores, or None if there is none.

    A save that fails to restore is reported in one warning line and set aside; if none restores
    on_broken="restart" says so and returns None (train from scratch), "stop" raises RunError.
    """
    steps = sorted(self.latest.all_steps(), reverse=True)
    broken, got = [], None
    for step in steps:
      try:
        with _quiet():
          out = self.latest.restore(step, args=ocp.args.Composite(
              state=ocp.args.StandardRestore(target), meta=ocp.args.JsonRestore()))
        got = (out["state"], out["meta"])
      except Exception as e:  # pylint: disable=broad-except  (any unreadable save: report, go on)
        broken.append(step)
        older = [s for s in steps if s < step]
        then = (f"trying the previous one (step {older[0]})" if older else
                "no older checkpoint is left")
        if self.main:
          warn(f"checkpoint {self.latest.directory / str(step)} does not restore "
               f"({_reason(e)}); {then}")
        continue
      break
    if broken:
      if got is None and on_broken == "stop":
        raise RunError(f"no checkpoint in {self.latest.directory} restores "
                       "(config.on_broken_checkpoint='stop'); move them away to start over")
      self._set_aside(self.latest, broken)
      if got is None and self.main:
        warn(f"no checkpoint in {self.latest.directory} restores; starting over from epoch 1 "
             "(config.on_broken_checkpoint='stop' stops instead)")
    return got

  def _set_aside(self, manager, steps) -> None:
    """Renames broken saves to broken-<step> (process 0, the others wait), so new saves, whose
    steps may be lower, are the ones found next time."""
    self.barrier("checkpoints tried")
    if self.main:
      for step in steps:
        path = manager.directory / str(step)
        if path.exists():
          aside = path.with_name(f"broken-{step}")
          n = 1
          while aside.exists():
            aside, n = path.with_name(f"broken-{step}-{n}"), n + 1
          path.rename(aside)
    self.barrier("broken checkpoints set aside")
    manager.reload()

  # -- best ------------------------------------------------------------------------------------
  def save_best(self, epoch: int, params, meta: dict, batch_stats=None) -> None:
    """The best parameters so far; `batch_stats` too for models with batch norm."""
    for stale in [s for s in self.best.all_steps() if s >= epoch]:
      self.best.delete(stale)  # left by a run killed between its best and latest saves
    items = {"params": ocp.args.StandardSave(params), "meta": ocp.args.JsonSave(meta)}
    if batch_stats is not None:
      items["batch_stats"] = ocp.args.StandardSave(batch_stats)
    self.best.save(epoch, args=ocp.args.Composite(**items))
    self.best.wait_until_finished()

  def _restore_best(self, **items):
    step = self.best.latest_step()
    if step is None:
      raise RunError(f"the run has no best checkpoint yet ({self.best.directory} is empty)")
    try:
      with _quiet():
        return self.best.restore(step, args=ocp.args.Composite(**items))
    except Exception as e:  # pylint: disable=broad-except
      if self._intact(step, items):
        raise  # the files are sound but hold another tree: the caller says what does not fit
      raise RunError(f"the best checkpoint {self.best.directory / str(step)} does not restore "
                     f"({_reason(e)})") from None

  def _intact(self, step: int, items: dict) -> bool:
    """Whether save `step` has readable metadata with other shapes than the targets (a model
    mismatch, not a damaged file)."""
    import jax  # pylint: disable=g-import-not-at-top
    try:
      with _quiet():
        meta = self.best.item_metadata(step)
      for name, arg in items.items():
        target = getattr(arg, "item", None)
        if target is None:
          continue
        shapes = lambda tree: {jax.tree_util.keystr(p): tuple(getattr(l, "shape", ()))
                               for p, l in jax.tree_util.tree_flatten_with_path(tree)[0]}
        if shapes(meta[name]) != shapes(target):
          return True
      return False
    except Exception:  # pylint: disable=broad-except
      return False

  def restore_best(self, target_params) -> tuple[Any, dict]:
    got = self._restore_best(params=ocp.args.StandardRestore(target_params),
                             meta=ocp.args.JsonRestore())
    return got["params"], got["meta"]

  def restore_best_batch_stats(self, target):
    """The batch_stats saved with the best parameters (models with batch norm)."""
    step = self.best.latest_step()
    if step is not None and not (self.best.directory / str(step) / "batch_stats").exists():
      raise RunError(f"the best checkpoint (epoch {step}) holds no batch_stats")
    got = self._restore_best(batch_stats=ocp.args.StandardRestore(target))
    return got["batch_stats"]

  def close(self) -> None:
    self.latest.close()
    self.best.close()
