"""The run directory: what a run writes and reads back.

  config.json          the config of the run (a rerun with another config is refused)
  metrics.jsonl        one line per epoch: train/val loss and accuracy, epoch seconds
  tensorboard/         the same scalars as TensorBoard events
  checkpoints/latest/  orbax: the full train state after the last finished epoch (for resuming)
  checkpoints/best/    orbax: the parameters with the best validation accuracy so far (and, for
                       models with batch norm, their batch_stats)
  results.json         written once at the end: test accuracy, per-scale test accuracy, ...

One seed writes `workdir` itself; several seeds trained together write `workdir/seed_<s>` each
(`seed_dir`), every one an ordinary run directory. Only process 0 writes files here; checkpoints
are saved by every process together (orbax writes replicated host arrays from process 0).
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import pathlib
from typing import Iterable, Iterator

import ml_collections

from stir_jax.errors import RunBusy, RunError  # re-exported: stir_jax.rundir.RunError, RunBusy


def config_dict(config) -> dict:
  return json.loads(config.to_json()) if hasattr(config, "to_json") else dict(config)


def seed_dir(workdir: str | os.PathLike, seed: int) -> pathlib.Path:
  """The run directory of one of several seeds: workdir/seed_<seed>."""
  return pathlib.Path(workdir) / f"seed_{int(seed)}"


def seed_config(config: ml_collections.ConfigDict, seed: int) -> ml_collections.ConfigDict:
  """An unlocked copy of config for one seed: seed = seed, num_seeds = 1 (a single run's config)."""
  out = ml_collections.ConfigDict(config_dict(config))
  out.seed = int(seed)
  out.num_seeds = 1
  return out


def write_json(path: pathlib.Path, obj) -> None:
  tmp = path.with_suffix(path.suffix + ".tmp")
  tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")
  os.replace(tmp, path)


def config_differences(found: dict, wanted: dict) -> list[str]:
  """Fields where a stored config differs from the wanted one. Fields either lacks take their
  defaults (`stir_jax.experiment.FIELDS`: a run from before a field existed is the same run as one
  with its default); fields that only change how a run executes (checkpoint interval, ...) are
  not compared."""
  from stir_jax import experiment  # pylint: disable=g-import-not-at-top
  found, wanted = experiment.with_defaults(found), experiment.with_defaults(wanted)
  norm = lambda v: list(v) if isinstance(v, tuple) else v
  return sorted(k for k in set(found) | set(wanted)
                if k not in experiment.RUNTIME_FIELDS and norm(found.get(k)) != norm(wanted.get(k)))


def started(workdir: pathlib.Path) -> bool:
  """Whether a run directory holds any trained epoch or step: metrics rows or a checkpoint."""
  if read_metrics(workdir):
    return True
  for sub in ("latest", "best"):
    d = workdir / "checkpoints" / sub
    if d.is_dir() and any(p.name.isdigit() for p in d.iterdir()):
      return True
  return (workdir / "results.json").exists()


def check_workdir(config, workdir: pathlib.Path) -> bool:
  """Whether workdir holds a run of this config (False: empty, missing, or a run with another
  config that never trained a step: a failed start leaves a directory the corrected command may
  take over); RunError otherwise."""
  cfg_path = workdir / "config.json"
  if cfg_path.exists():
    try:
      found = json.loads(cfg_path.read_text())
    except json.JSONDecodeError as e:
      raise RunError(f"{cfg_path} is not valid JSON ({e}); refusing to touch this directory") from None
    diff = config_differences(found, config_dict(config))
    if diff and not started(workdir):
      return False
    if diff:
      raise RunError(f"{workdir} holds a run with a different config (fields: {', '.join(diff)}); "
                     "use another --workdir")
    return True
  if workdir.exists() and any(workdir.iterdir()):
    raise RunError(f"{workdir} is not empty and holds no stir_jax run (no config.json); "
                   "use another --workdir")
  return False


def prepare_workdir(config, workdir: pathlib.Path) -> None:
  """Checks workdir (see `check_workdir`) and creates it with config.json if it holds no run."""
  if not check_workdir(config, workdir):
    workdir.mkdir(parents=True, exist_ok=True)
    write_json(workdir / "config.json", config_dict(config))


@contextlib.contextmanager
def claimed(workdirs: Iterable[pathlib.Path]) -> Iterator[None]:
  """Holds an exclusive lock on each run directory (creating it, empty, if missing) for the block.

  Two processes on one directory (two sweep workers on one grid, train.py started twice) would
  write the same checkpoints and metrics; the second gets RunBusy instead. The lock is flock(2) on
  the directory itself: no lock file is left behind, and it goes when the process ends, however it
  ends (a killed worker's runs are free again). On a filesystem without flock the block runs
  unlocked, as it did before. Under jax.distributed the block runs unlocked too: the processes of
  one run train the same directories together. A directory this call created and the block left
  empty is removed again (a failed start leaves nothing behind).
  """
  import jax  # pylint: disable=g-import-not-at-top
  if jax.process_count() > 1:
    yield
    return
  fds, created = [], []
  try:
    for d in workdirs:
      d = pathlib.Path(d)
      new = False
      if not d.exists():
        d.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):  # another process may have made it just now
          d.mkdir()
          new = True
      fd = os.open(d, os.O_RDONLY)
      fds.append(fd)
      try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
      except OSError as e:
        if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
          raise RunBusy(f"{d} is being trained by another process (it holds the directory's "
                        "lock); wait for it to end, or stop it and rerun") from None
        # ENOLCK, EBADF, EINVAL...: no flock here; run unlocked
      if new:
        created.append(d)
    yield
  finally:
    for d in created:  # still locked: no other process can have started in it
      with contextlib.suppress(OSError):
        d.rmdir()  # only if empty
    for fd in fds:
      os.close(fd)  # closing the last descriptor releases the lock


def is_finished(workdir: pathlib.Path) -> bool:
  """Whether a run directory holds a finished run (results.json next to its config.json)."""
  return (workdir / "results.json").exists() and (workdir / "config.json").exists()


def read_results(workdir: pathlib.Path) -> dict:
  return json.loads((workdir / "results.json").read_text())


def read_metrics(workdir: pathlib.Path) -> list[dict]:
  path = workdir / "metrics.jsonl"
  if not path.exists():
    return []
  return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def rewrite_metrics(workdir: pathlib.Path, rows: list[dict]) -> None:
  path = workdir / "metrics.jsonl"
  tmp = path.with_suffix(".jsonl.tmp")
  tmp.write_text("".join(json.dumps(r) + "\n" for r in rows))
  os.replace(tmp, path)


def tensorboard_writer(workdir: pathlib.Path):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top  (loaded by the tf.data pipeline)
  return tf.summary.create_file_writer(str(workdir / "tensorboard"))


def log_scalars(writer, epoch: int, row: dict) -> None:
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  with writer.as_default():
    for key, value in row.items():
      if key != "epoch":
        tf.summary.scalar(key, value, step=epoch)
  writer.flush()
