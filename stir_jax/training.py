"""Training: the paper's protocol (Adam, early stopping on validation accuracy, best parameters
tested) as a resumable loop writing a self-describing run directory.

Run directory (workdir) layout:
  config.json          the config of the run (a rerun with another config is refused)
  metrics.jsonl        one line per epoch: train/val loss and accuracy, epoch seconds
  checkpoints/latest/  orbax: the full train state after the last finished epoch (for resuming)
  checkpoints/best/    orbax: the parameters with the best validation accuracy so far
  results.json         written once at the end: test accuracy, per-scale test accuracy, ...

`train_and_evaluate(config, workdir)` is what train.py calls; tests call it too.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import pathlib
import time
from typing import Any, Callable, Iterable, Iterator

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import orbax.checkpoint as ocp
from flax import struct
from tqdm.auto import tqdm

import stir_jax
from stir_jax import metrics, models, parallel
from stir_jax.data import pipeline, stir_file


class RunError(RuntimeError):
  """A problem with the run's inputs or directory; train.py prints it as one line."""


@struct.dataclass
class TrainState:
  step: jax.Array
  params: Any
  opt_state: Any


# --- steps -----------------------------------------------------------------------------------

def make_optimizer(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
  """Adam with the config's learning rate (PyTorch's Adam defaults: b1 .9, b2 .999, eps 1e-8)."""
  return optax.adam(config.learning_rate)


def create_train_state(model, tx, rng: jax.Array, num_channels: int) -> TrainState:
  # Jitted: run eagerly, the SiConv models' unrolled scale loops take about a minute to initialise.
  params = jax.jit(model.init)(rng, jnp.zeros((1, 64, 64, num_channels), jnp.float32))["params"]
  return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params))


def train_step_fn(model, tx) -> Callable:
  """The pure step: (state, batch, axis_name) -> (state, stats).

  The loss is the cross-entropy summed over the batch's real examples (batch["mask"]) divided by
  their global count, so a padded last batch gives the same update as an unpadded smaller one and
  the data-parallel paths (stir_jax.parallel) match a single device. axis_name: the pmap axis to
  psum over, or None (single device, or jit with sharded inputs).
  """

  def step(state: TrainState, batch, axis_name=None) -> tuple[TrainState, dict]:
    mask = batch["mask"].astype(jnp.float32)
    count = jnp.maximum(parallel.psum_if(mask.sum(), axis_name), 1.0)

    def loss_fn(params):
      logits = model.apply({"params": params}, batch["image"])
      return jnp.sum(metrics.cross_entropy(logits, batch["label"]) * mask) / count, logits

    (_, logits), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    grads = parallel.psum_if(grads, axis_name)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    stats = parallel.psum_if(metrics.batch_stats(logits, batch["label"], mask=batch["mask"]),
                             axis_name)
    return TrainState(step=state.step + 1, params=params, opt_state=opt_state), stats

  return step


def eval_step_fn(model) -> Callable:
  """The pure evaluation step: (params, batch, axis_name) -> stats with per-scale counts."""

  def step(params, batch, axis_name=None):
    logits = model.apply({"params": params}, batch["image"])
    return parallel.psum_if(
        metrics.batch_stats(logits, batch["label"], batch["scale"], batch["mask"]), axis_name)

  return step


def make_train_step(model, tx) -> Callable:
  """Single-device jit step: (state, batch) -> (state, stats). The state's buffers are donated."""
  step = train_step_fn(model, tx)
  return jax.jit(lambda s, b: step(s, b), donate_argnums=0)


def make_eval_step(model) -> Callable:
  """Single-device jit (params, batch) -> stats with per-scale counts."""
  step = eval_step_fn(model)
  return jax.jit(lambda p, b: step(p, b))


def evaluate_split(eval_step, params, batches: Iterable[dict]) -> dict:
  """Merged sums over a split (see metrics.finalize); batches carry a 'mask' of real examples."""
  total = None
  for batch in batches:
    total = metrics.merge(total, jax.device_get(eval_step(params, batch)))
  if total is None:
    raise RunError("an evaluation split is empty")
  return total


# --- run directory ---------------------------------------------------------------------------

def config_dict(config) -> dict:
  return json.loads(config.to_json()) if hasattr(config, "to_json") else dict(config)


def write_json(path: pathlib.Path, obj) -> None:
  tmp = path.with_suffix(path.suffix + ".tmp")
  tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")
  os.replace(tmp, path)


def prepare_workdir(config, workdir: pathlib.Path) -> None:
  """Creates workdir/config.json, or checks that an existing run used the same config."""
  wanted = config_dict(config)
  cfg_path = workdir / "config.json"
  if cfg_path.exists():
    try:
      found = json.loads(cfg_path.read_text())
    except json.JSONDecodeError as e:
      raise RunError(f"{cfg_path} is not valid JSON ({e}); refusing to touch this directory") from None
    if found != wanted:
      diff = sorted(k for k in set(found) | set(wanted) if found.get(k) != wanted.get(k))
      raise RunError(f"{workdir} holds a run with a different config (fields: {', '.join(diff)}); "
                     "use another --workdir")
    return
  if workdir.exists() and any(workdir.iterdir()):
    raise RunError(f"{workdir} is not empty and holds no stir_jax run (no config.json); "
                   "use another --workdir")
  workdir.mkdir(parents=True, exist_ok=True)
  write_json(cfg_path, wanted)


class Checkpoints:
  """The run's two orbax checkpoint managers: latest full state (resume) and best parameters."""

  def __init__(self, workdir: pathlib.Path):
    opts = ocp.CheckpointManagerOptions(max_to_keep=1, enable_async_checkpointing=False)
    self.latest = ocp.CheckpointManager((workdir / "checkpoints" / "latest").absolute(),
                                        options=opts, item_names=("state", "meta"))
    self.best = ocp.CheckpointManager((workdir / "checkpoints" / "best").absolute(),
                                      options=opts, item_names=("params", "meta"))

  def save_latest(self, epoch: int, state: TrainState, meta: dict) -> None:
    self.latest.save(epoch, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                    meta=ocp.args.JsonSave(meta)))
    self.latest.wait_until_finished()

  def restore_latest(self, target: TrainState) -> tuple[TrainState, dict] | None:
    step = self.latest.latest_step()
    if step is None:
      return None
    got = self.latest.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(target), meta=ocp.args.JsonRestore()))
    return got["state"], got["meta"]

  def save_best(self, epoch: int, params, meta: dict) -> None:
    for stale in [s for s in self.best.all_steps() if s >= epoch]:
      self.best.delete(stale)  # left by a run killed between its best and latest saves
    self.best.save(epoch, args=ocp.args.Composite(params=ocp.args.StandardSave(params),
                                                  meta=ocp.args.JsonSave(meta)))
    self.best.wait_until_finished()

  def restore_best(self, target_params) -> tuple[Any, dict]:
    step = self.best.latest_step()
    if step is None:
      raise RunError("the run has no best checkpoint yet")
    got = self.best.restore(step, args=ocp.args.Composite(
        params=ocp.args.StandardRestore(target_params), meta=ocp.args.JsonRestore()))
    return got["params"], got["meta"]

  def close(self) -> None:
    self.latest.close()
    self.best.close()


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


# --- data ------------------------------------------------------------------------------------

def load_dataset(config) -> stir_file.StirData:
  """Loads config.dataset, generating the emoji domain first when that file is missing."""
  path = pathlib.Path(config.dataset)
  if not path.exists() and path.name.startswith("emoji"):
    print(f"{path} is missing: generating STIR-emoji (once)")
    pipeline.ensure_emoji(path)
  try:
    return stir_file.load_stir(path)
  except stir_file.StirFileError as e:
    raise RunError(str(e)) from None


def epoch_seed(seed: int, epoch: int) -> int:
  return int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0])


def split_batches(data, split: str, config, *, batch_size: int, seed: int | None = None,
             scales=None) -> Iterator[dict]:
  """This process's share of a split in batches of batch_size (the global batch size): each
  batch is padded to full size with a 'mask' of real examples, so shapes stay static and every
  process runs the same number of steps."""
  count = jax.process_count()
  ds = pipeline.make_dataset(data, split, config.scenario, batch_size=batch_size,
                             shuffle=seed is not None, seed=seed or 0, scales=scales,
                             process_index=jax.process_index(), process_count=count,
                             pad_remainder=True)
  for batch in pipeline.iterate(ds):
    yield {k: batch[k] for k in ("image", "label", "scale", "mask")}


# --- early stopping ----------------------------------------------------------------------------

def early_stopping_update(meta: dict, epoch: int, val_accuracy: float) -> tuple[dict, bool]:
  """The stopping state after an epoch: a strictly better validation accuracy resets the count of
  epochs without improvement (and marks the parameters to keep); otherwise the count grows."""
  improved = val_accuracy > meta["best_val_accuracy"]
  return {"epoch": epoch,
          "best_val_accuracy": val_accuracy if improved else meta["best_val_accuracy"],
          "best_epoch": epoch if improved else meta["best_epoch"],
          "bad_epochs": 0 if improved else meta["bad_epochs"] + 1}, improved


def should_stop(meta: dict, patience: int) -> bool:
  """Stop once `patience` epochs in a row brought no better validation accuracy."""
  return meta["bad_epochs"] >= patience


# --- the loop --------------------------------------------------------------------------------

def start_or_resume(model, tx, seed: int, num_channels: int, workdir: pathlib.Path,
                    write: bool = True) -> tuple[TrainState, dict, list[dict], Checkpoints]:
  """The run's host state after its last saved epoch, or a fresh one for `seed`.

  Returns (state, early-stopping meta, metrics history, checkpoints). metrics.jsonl lines past
  the restored epoch (written by a run killed before its checkpoint) are dropped (when `write`).
  """
  state = create_train_state(model, tx, jax.random.PRNGKey(seed), num_channels)
  ckpt = Checkpoints(workdir)
  meta = {"epoch": 0, "best_val_accuracy": -1.0, "best_epoch": 0, "bad_epochs": 0}
  history = []
  restored = ckpt.restore_latest(state)
  if restored is not None:
    state, meta = restored
    history = [r for r in read_metrics(workdir) if r["epoch"] <= meta["epoch"]]
    print(f"resuming {workdir} after epoch {meta['epoch']}")
  if write:
    rewrite_metrics(workdir, history)
  return state, meta, history, ckpt


def build_model(config, data):
  """The config's model for the data's channel and class counts (RunError on a bad name)."""
  try:
    return models.get_model(config.model, data.num_channels, data.num_classes,
                            config.kernel_size, config.interpolation,
                            **({"impl": config.impl} if takes_impl(config.model) else {}))
  except ValueError as e:
    raise RunError(str(e)) from None


def make_parallel(config) -> parallel.DataParallel:
  """The data-parallel path of config.parallelism over all devices, batch sizes checked."""
  try:
    par = parallel.DataParallel(config.get("parallelism", "jit"))
    par.check_global_batch(config.batch_size)
  except ValueError as e:
    raise RunError(str(e)) from None
  return par


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str | os.PathLike,
                       progress: bool = True,
                       on_epoch_end: Callable[[int], None] | None = None) -> dict:
  """Trains config.model on config.dataset with early stopping, then tests the best parameters.

  Runs data-parallel over every device JAX sees (config.parallelism: "jit" or "pmap"); with
  several processes, only process 0 writes logs and results. Resumes from
  workdir/checkpoints/latest when present; returns (and writes) results.json. A run whose
  results.json exists is not retrained. `on_epoch_end(epoch)` is called after each epoch's
  checkpoint is written (hooks for schedulers; tests use it to simulate a crash).
  """
  if config.get("num_seeds", 1) > 1:  # several seeds in one program: workdir/seed_<s>/ each
    from stir_jax import multiseed  # pylint: disable=g-import-not-at-top
    return multiseed.train_many(config, workdir, progress=progress, on_epoch_end=on_epoch_end)
  workdir = pathlib.Path(workdir)
  main = jax.process_index() == 0
  if (workdir / "results.json").exists() and (workdir / "config.json").exists():
    prepare_workdir(config, workdir)  # still refuse a different config
    print(f"{workdir} is finished (results.json exists); nothing to do")
    return json.loads((workdir / "results.json").read_text())

  data = load_dataset(config)
  model = build_model(config, data)
  par = make_parallel(config)
  eval_bs = par.eval_batch_size(config.eval_batch_size)
  if main:
    prepare_workdir(config, workdir)

  tx = make_optimizer(config)
  state, meta, history, ckpt = start_or_resume(model, tx, config.seed, data.num_channels, workdir,
                                               write=main)

  state = par.put_state(state)
  train_step = par.train_step(train_step_fn(model, tx))
  eval_step = par.eval_step(eval_step_fn(model))
  tb = tensorboard_writer(workdir) if main else None
  n_train = pipeline.num_examples(data, "train", config.scenario)
  steps_per_epoch = math.ceil(n_train / config.batch_size)
  stop_reason = "num_epochs reached"
  for epoch in range(meta["epoch"] + 1, config.num_epochs + 1):
    if should_stop(meta, config.patience):
      stop_reason = "early stopping"
      break
    start = time.perf_counter()
    total = None
    bar = tqdm(total=steps_per_epoch, desc=f"epoch {epoch}/{config.num_epochs}", unit="step",
               disable=not (progress and main), leave=False, dynamic_ncols=True)
    for batch in split_batches(data, "train", config, batch_size=config.batch_size,
                          seed=epoch_seed(config.seed, epoch)):
      state, stats = train_step(state, batch)
      total = metrics.merge(total, jax.device_get(stats))
      bar.update(1)
      bar.set_postfix(loss=f"{total['loss_sum'] / total['count']:.3f}",
                      acc=f"{total['correct'] / total['count']:.3f}")
    bar.close()
    train = metrics.finalize(total)
    if not math.isfinite(train["loss"]):
      raise RunError(f"non-finite training loss in epoch {epoch}; stopped, the last good "
                     f"checkpoint (epoch {meta['epoch']}) is kept in {workdir}")
    val = metrics.finalize(evaluate_split(
        eval_step, state.params, split_batches(data, "valid", config, batch_size=eval_bs)))
    seconds = time.perf_counter() - start
    row = {"epoch": epoch, "train_loss": train["loss"], "train_accuracy": train["accuracy"],
           "val_loss": val["loss"], "val_accuracy": val["accuracy"], "epoch_seconds": seconds}
    meta, improved = early_stopping_update(meta, epoch, val["accuracy"])
    host_state = par.get_state(state)
    if improved:
      ckpt.save_best(epoch, host_state.params, {"epoch": epoch, "val_accuracy": val["accuracy"]})
    history.append(row)
    if main:
      rewrite_metrics(workdir, history)
      log_scalars(tb, epoch, row)
    ckpt.save_latest(epoch, host_state, meta)
    if progress and main:
      print(f"epoch {epoch}: train loss {train['loss']:.4f} acc {train['accuracy']:.3f} | "
            f"val loss {val['loss']:.4f} acc {val['accuracy']:.3f}{' *' if improved else ''} | "
            f"{seconds:.1f}s")
    if on_epoch_end is not None:
      on_epoch_end(epoch)
  else:
    if should_stop(meta, config.patience):
      stop_reason = "early stopping"

  params, best = ckpt.restore_best(par.get_state(state).params)
  ckpt.close()
  test = test_metrics(eval_step, par.put_state(params), data, config, eval_bs)
  results = {
      "model": config.model, "dataset": str(config.dataset), "scenario": config.scenario,
      "test_loss": test["loss"], "test_accuracy": test["accuracy"], "test_count": test["count"],
      "per_scale": test["per_scale"],
      "best_val_accuracy": best["val_accuracy"], "best_epoch": best["epoch"],
      "epochs_run": len(history), "stop_reason": stop_reason,
      "mean_epoch_seconds": float(np.mean([r["epoch_seconds"] for r in history])) if history else None,
      "config": config_dict(config), "version": stir_jax.__version__,
      "jax_backend": jax.default_backend(), "jax_devices": [str(d) for d in jax.devices()],
      "parallelism": par.mode, "num_devices": par.num_devices,
  }
  if main:
    write_json(workdir / "results.json", results)
  return results


def test_metrics(eval_step, params, data, config, batch_size: int | None = None) -> dict:
  """One pass over the test split at all 48 scales: per-scale accuracy, and loss/accuracy on the
  scenario's test scales (summed from the per-scale totals)."""
  total = evaluate_split(eval_step, params,
                         split_batches(data, "test", config, batch_size=batch_size or config.eval_batch_size,
                                  scales=metrics.SCALES))
  scenario = metrics.finalize(metrics.restrict(total, pipeline.scales_for(config.scenario, "test")))
  return {**scenario, "per_scale": metrics.finalize(total)["per_scale"]}


def tensorboard_writer(workdir: pathlib.Path):
  import tensorflow as tf  # already loaded by the tf.data pipeline
  return tf.summary.create_file_writer(str(workdir / "tensorboard"))


def log_scalars(writer, epoch: int, row: dict) -> None:
  import tensorflow as tf
  with writer.as_default():
    for key, value in row.items():
      if key != "epoch":
        tf.summary.scalar(key, value, step=epoch)
  writer.flush()


def takes_impl(name: str) -> bool:
  return name in ("pixel_pool", "slice_pool", "energy_pool", "soft_pool", "conv3d")
