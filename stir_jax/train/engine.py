"""The training engine: the paper's protocol (Adam, early stopping on validation accuracy, the
best-validation parameters tested) for one seed or many, on one device or many, on one host or many.
The same loop runs the MNIST-scale protocol (Sosnovik et al. 2020: Adam with a step learning rate,
a fixed number of epochs, normalised inputs, models with batch norm and dropout; configs/
mnist_scale.py) when config.dataset is an MNIST-scale file and config.model one of its models.

`train_and_evaluate(config, workdir)` is what train.py calls; the sweep calls `train_seeds`. Both
run the one loop of `train_seeds`: the seeds are stacked along a leading axis (one seed is the
ordinary run), placed on a (seed, data) mesh (`placement.Placement`), and every epoch
  - trains the running seeds on their own data orders (`inputs.epoch_seed(seed, epoch)`), metric
    sums accumulating on the devices, the next batch prefetched while the step runs,
  - evaluates them on the validation split in one pass (one batch for all seeds),
  - updates each seed's early stopping, writes its metrics.jsonl row (process 0) and checkpoints.
A seed that stops (early stopping, num_epochs, a non-finite loss) leaves the stacked state: the
remaining seeds are re-placed, so it costs no more compute. At the end every seed's best parameters
are tested in one pass over the test split (STIR: at all 48 sizes) and each seed's results.json is
written.

Rerunning resumes every seed from its own checkpoints/latest; a finished seed (results.json) is
skipped. The run directories are `workdir` for one seed and `workdir/seed_<s>` for several
(`rundir.seed_dir`); which one is only a question of where results go.
"""
from __future__ import annotations

import dataclasses
import math
import os
import pathlib
import time
from typing import Any, Callable, Sequence

import jax
import ml_collections
import numpy as np
from tqdm.auto import tqdm

import stir_jax
from stir_jax import allocator, metrics
from stir_jax.train import state as state_lib, steps
from stir_jax.data import splits as inputs
from stir_jax import distributed
from stir_jax import checkpoints, rundir
from stir_jax.train.placement import Placement, prefetch, stack, unstack
from stir_jax.rundir import RunError

PROGRESS_EVERY = 8  # steps between progress-bar reads of the on-device sums


# --- early stopping ----------------------------------------------------------------------------

def fresh_meta() -> dict:
  return {"epoch": 0, "best_val_accuracy": -1.0, "best_epoch": 0, "bad_epochs": 0}


def early_stopping_update(meta: dict, epoch: int, val_accuracy: float) -> tuple[dict, bool]:
  """The stopping state after an epoch: a strictly better validation accuracy resets the count of
  epochs without improvement (and marks the parameters to keep); otherwise the count grows."""
  improved = val_accuracy > meta["best_val_accuracy"]
  return {"epoch": epoch,
          "best_val_accuracy": val_accuracy if improved else meta["best_val_accuracy"],
          "best_epoch": epoch if improved else meta["best_epoch"],
          "bad_epochs": 0 if improved else meta["bad_epochs"] + 1}, improved


def should_stop(meta: dict, patience: int) -> bool:
  """Stop once `patience` epochs in a row brought no better validation accuracy (patience 0: never,
  every run trains num_epochs)."""
  return patience > 0 and meta["bad_epochs"] >= patience


# --- one seed's run ----------------------------------------------------------------------------

@dataclasses.dataclass
class SeedRun:
  """One seed's host-side state: its directory, config, latest host state and history."""
  seed: int
  dir: pathlib.Path
  config: ml_collections.ConfigDict
  state: Any                     # host (numpy) TrainState after the last finished epoch
  meta: dict
  history: list[dict]
  ckpt: checkpoints.Checkpoints
  failed: str | None = None
  tb: Any = None

  def running(self, config) -> bool:
    return (self.failed is None and self.meta["epoch"] < config.num_epochs
            and not should_stop(self.meta, config.patience))


def start_or_resume(model, tx, seed: int, num_channels: int, workdir: pathlib.Path,
                    write: bool, image_size: int = 64, train_mode: bool = False
                    ) -> tuple[Any, dict, list[dict], checkpoints.Checkpoints]:
  """A seed's host state after its last saved epoch, or a fresh one.

  Returns (host state, early-stopping meta, metrics history, checkpoints). metrics.jsonl lines past
  the restored epoch (written by a run killed before its checkpoint) are dropped (when `write`).
  """
  state = jax.device_get(state_lib.create_train_state(
      model, tx, jax.random.PRNGKey(seed), num_channels, image_size, train_mode))
  ckpt = checkpoints.Checkpoints(workdir)
  meta, history = fresh_meta(), []
  restored = ckpt.restore_latest(state_lib.checkpoint_tree(state))
  if restored is not None:
    tree, meta = restored
    state = state_lib.from_checkpoint_tree(state, tree)
    history = [r for r in rundir.read_metrics(workdir) if r["epoch"] <= meta["epoch"]]
    if write:
      print(f"resuming {workdir} after epoch {meta['epoch']}")
  if write:
    rundir.rewrite_metrics(workdir, history)
  return state, meta, history, ckpt


# --- the loop ----------------------------------------------------------------------------------

def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str | os.PathLike,
                       progress: bool = True,
                       on_epoch_end: Callable[[int], None] | None = None) -> dict:
  """Trains config.model on config.dataset (early stopping unless config.patience is 0), then tests
  the best parameters.

  config.num_seeds = N > 1 trains seeds config.seed .. config.seed + N - 1 together, one run
  directory workdir/seed_<s> each; otherwise workdir is the run directory. Returns results.json
  for one seed, and for several {"seeds", "runs", "test_accuracy" (mean), "test_accuracy_std",
  "workdir"}. `on_epoch_end(epoch)` is called after each epoch's checkpoints are written (tests use
  it to simulate a crash).
  """
  workdir = pathlib.Path(workdir)
  n = int(config.get("num_seeds", 1))
  if n < 1:
    raise RunError(f"num_seeds must be at least 1, got {n}")
  seeds = [int(config.seed) + i for i in range(n)]
  if n == 1:
    return train_seeds(config, {seeds[0]: workdir}, progress, on_epoch_end)[seeds[0]]
  if (workdir / "config.json").exists() or (workdir / "results.json").exists():
    raise RunError(f"{workdir} is a single run's directory; several seeds write "
                   "<workdir>/seed_<s>/ and need a directory of their own")
  results = train_seeds(config, {s: rundir.seed_dir(workdir, s) for s in seeds}, progress,
                        on_epoch_end)
  return summary(workdir, seeds, results)


def summary(workdir: pathlib.Path, seeds: Sequence[int], results: dict) -> dict:
  accs = np.array([results[s]["test_accuracy"] for s in seeds])
  return {"seeds": list(seeds), "runs": [results[s] for s in seeds],
          "test_accuracy": float(accs.mean()),
          "test_accuracy_std": float(accs.std(ddof=1)) if len(accs) > 1 else 0.0,
          "workdir": str(workdir)}


def train_seeds(config: ml_collections.ConfigDict, dirs: dict[int, pathlib.Path],
                progress: bool = True,
                on_epoch_end: Callable[[int], None] | None = None) -> dict[int, dict]:
  """Trains the seeds of `dirs` (seed -> run directory) together; returns seed -> results.json.

  config's own seed and num_seeds are ignored (each directory gets the config with its seed and
  num_seeds = 1). Finished seeds are skipped (their config is still checked), the others resumed.

  Raises:
    RunError: a bad directory or config; after writing the other seeds' results, a seed whose
      training loss became non-finite (its last good checkpoint is kept).
  """
  seeds = [int(s) for s in dirs]
  if not seeds or len(set(seeds)) != len(seeds):
    raise RunError(f"need distinct seeds, got {seeds}")
  main = distributed.is_main()
  configs = {s: rundir.seed_config(config, s) if len(seeds) > 1 else config for s in seeds}
  dirs = {s: pathlib.Path(d) for s, d in dirs.items()}
  results = {}
  for s in seeds:
    if rundir.is_finished(dirs[s]):
      rundir.check_workdir(configs[s], dirs[s])  # still refuse a different config
      results[s] = rundir.read_results(dirs[s])
  todo = [s for s in seeds if s not in results]
  if not todo:
    if main:
      where = dirs[seeds[0]] if len(seeds) == 1 else f"all {len(seeds)} seeds"
      print(f"{where}: finished (results.json exists); nothing to do")
    return results
  if len(todo) < len(seeds) and main:
    print(f"{len(seeds) - len(todo)} of {len(seeds)} seeds already finished")

  data = inputs.load_dataset(config)
  model = state_lib.build_model(config, data)
  steps_per_epoch = math.ceil(inputs.num_train_examples(data, config.scenario) / config.batch_size)
  tx = state_lib.make_optimizer(config, steps_per_epoch)
  parallelism, batching = config.get("parallelism", "jit"), config.get("seed_batching", "auto")
  train_mode = state_lib.has_train_mode(config.model)
  norm = inputs.input_norm(config)
  train_fn = steps.train_step_fn(model, tx, train_mode=train_mode, input_norm=norm)
  eval_fn = steps.eval_step_fn(model, with_batch_stats=train_mode, input_norm=norm)
  per_scale = not inputs.is_mnist_scale(data)  # STIR batches carry object sizes
  order = inputs.train_order(config, data)  # None: a new order every epoch

  def eval_variables(state):
    """What the eval step takes: params, or {"params", "batch_stats"} (train-mode models)."""
    if train_mode:
      return {"params": state.params, "batch_stats": state.batch_stats}
    return state.params
  compiled: dict[int, tuple[Placement, Callable, Callable]] = {}

  def placed(n: int) -> tuple[Placement, Callable, Callable]:
    """The placement and compiled steps for n running seeds (built once per n)."""
    if n not in compiled:
      p = Placement(n, parallelism, batching)
      p.check_global_batch(config.batch_size)
      compiled[n] = (p, p.train_step(train_fn), p.eval_step(eval_fn))
    return compiled[n]

  placement = placed(len(todo))[0]
  if main:  # process 0 creates the directories, the others check them once they exist
    for s in todo:
      rundir.prepare_workdir(configs[s], dirs[s])
  distributed.barrier("run directories prepared")
  if not main:
    for s in todo:
      rundir.check_workdir(configs[s], dirs[s])

  runs = []
  for s in todo:
    host, meta, history, ckpt = start_or_resume(model, tx, s, data.num_channels, dirs[s], main,
                                                inputs.image_size(data), train_mode)
    runs.append(SeedRun(s, dirs[s], configs[s], host, meta, history, ckpt,
                        tb=rundir.tensorboard_writer(dirs[s]) if main else None))
  if progress and main:
    print(f"training {placement.describe()}")
  on_device, device_state = None, None  # which runs the placed state holds, and the state
  while True:
    active = [r for r in runs if r.running(config)]
    if not active:
      break
    placement, train_step, eval_step = placed(len(active))
    eval_bs = placement.eval_batch_size(config.eval_batch_size)
    if on_device != [r.seed for r in active]:
      device_state = placement.put_state(stack([r.state for r in active]))
      on_device = [r.seed for r in active]
    epochs = [r.meta["epoch"] + 1 for r in active]
    start = time.perf_counter()
    streams = [inputs.split_batches(data, "train", config.scenario, batch_size=config.batch_size,
                                    seed=None if order is not None else inputs.epoch_seed(r.seed, e),
                                    order=order)
               for r, e in zip(active, epochs)]
    label = (f"epoch {epochs[0]}" if len(set(epochs)) == 1
             else f"epochs {min(epochs)}-{max(epochs)}")
    seeds_note = f" ({len(active)} seeds)" if len(runs) > 1 else ""
    bar = tqdm(total=steps_per_epoch, desc=f"{label}/{config.num_epochs}{seeds_note}",
               unit="step", disable=not (progress and main), leave=False, dynamic_ncols=True)
    sums = placement.zero_sums(per_scale=False)
    stacked = ({k: np.stack([b[k] for b in batches]) for k in batches[0]}
               for batches in zip(*streams))
    for i, batch in enumerate(prefetch(stacked, placement.put_train_batch)):
      device_state, sums = train_step(device_state, sums, batch)
      bar.update(1)
      if (i + 1) % PROGRESS_EVERY == 0 and progress and main:
        host = placement.get_sums(sums)
        bar.set_postfix(loss=f"{np.mean(host['loss_sum'] / np.maximum(host['count'], 1)):.3f}")
    bar.close()
    train_totals = placement.get_sums(sums)
    val_totals = placement.evaluate(eval_step, eval_variables(device_state), inputs.split_batches(
        data, "valid", config.scenario, batch_size=eval_bs), per_scale=per_scale)
    seconds = time.perf_counter() - start
    host = placement.get_state(device_state)
    improved_count = 0
    for i, r in enumerate(active):
      train = metrics.finalize({k: v[i] for k, v in train_totals.items()})
      if not math.isfinite(train["loss"]):
        where = f"seed {r.seed}: " if len(runs) > 1 else ""
        r.failed = (f"{where}non-finite training loss in epoch {epochs[i]}; stopped, the last "
                    f"good checkpoint (epoch {r.meta['epoch']}) is kept in {r.dir}")
        if main:
          print(r.failed)
        on_device = None  # the next epoch re-places the others without it
        continue
      val = metrics.finalize({k: v[i] for k, v in val_totals.items()})
      row = {"epoch": epochs[i], "train_loss": train["loss"], "train_accuracy": train["accuracy"],
             "val_loss": val["loss"], "val_accuracy": val["accuracy"], "epoch_seconds": seconds}
      r.meta, improved = early_stopping_update(r.meta, epochs[i], val["accuracy"])
      r.state = unstack(host, i)
      if improved:
        improved_count += 1
        r.ckpt.save_best(epochs[i], r.state.params,
                         {"epoch": epochs[i], "val_accuracy": val["accuracy"]},
                         batch_stats=r.state.batch_stats if train_mode else None)
      r.history.append(row)
      if main:
        rundir.rewrite_metrics(r.dir, r.history)
        rundir.log_scalars(r.tb, epochs[i], row)
      r.ckpt.save_latest(epochs[i], state_lib.checkpoint_tree(r.state), r.meta)
    if progress and main:
      _print_epoch(label, [r for r in active if r.failed is None], improved_count, seconds)
    if on_epoch_end is not None:
      on_epoch_end(max(epochs))

  tested = [r for r in runs if r.failed is None]
  if tested:
    placement, _, eval_step = placed(len(tested))
    best_states, bests = [], []
    for r in tested:
      params, best = r.ckpt.restore_best(r.state.params)
      batch_stats = (r.ckpt.restore_best_batch_stats(r.state.batch_stats) if train_mode
                     else r.state.batch_stats)
      best_states.append(r.state.replace(params=params, batch_stats=batch_stats))
      bests.append(best)
    best_variables = [eval_variables(b) for b in best_states]
    totals = placement.evaluate(
        eval_step, placement.put_state(stack(best_variables)),
        inputs.test_batches(data, config.scenario,
                            placement.eval_batch_size(config.eval_batch_size)),
        per_scale=per_scale)
    for i, r in enumerate(tested):
      test = inputs.test_results(data, config.scenario, {k: v[i] for k, v in totals.items()})
      results[r.seed] = _results(r, test, bests[i], placement, len(runs))
      if main:
        rundir.write_json(r.dir / "results.json", results[r.seed])
  for r in runs:
    r.ckpt.close()
  failed = [r.failed for r in runs if r.failed is not None]
  if failed:
    raise RunError("; ".join(failed)
                   + (f" (the other {len(tested)} seeds finished)" if tested else ""))
  return results


def _print_epoch(label: str, done: list[SeedRun], improved: int, seconds: float) -> None:
  if not done:
    return
  if len(done) == 1 and len(done[0].history):
    row = done[0].history[-1]
    print(f"epoch {row['epoch']}: train loss {row['train_loss']:.4f} "
          f"acc {row['train_accuracy']:.3f} | val loss {row['val_loss']:.4f} "
          f"acc {row['val_accuracy']:.3f}{' *' if improved else ''} | {seconds:.1f}s")
    return
  accs = [r.history[-1]["val_accuracy"] for r in done]
  print(f"{label}: {len(done)} seeds | val acc mean {np.mean(accs):.3f} (min {np.min(accs):.3f}, "
        f"max {np.max(accs):.3f}) | {improved} improved | {seconds:.1f}s")


def _results(run: SeedRun, test: dict, best: dict, placement: Placement,
             seeds_in_program: int) -> dict:
  """A seed's results.json."""
  config = run.config
  stop = "early stopping" if should_stop(run.meta, config.patience) else "num_epochs reached"
  benchmark = {"per_scale": test["per_scale"]} if "per_scale" in test else {
      "benchmark": "mnist_scale"}
  return {
      "model": config.model, "dataset": str(config.dataset),
      "scenario": config.scenario if "per_scale" in test else None,
      "test_loss": test["loss"], "test_accuracy": test["accuracy"], "test_count": test["count"],
      **benchmark,
      "best_val_accuracy": best["val_accuracy"], "best_epoch": best["epoch"],
      "epochs_run": len(run.history), "stop_reason": stop,
      "mean_epoch_seconds": (float(np.mean([r["epoch_seconds"] for r in run.history]))
                             if run.history else None),
      "config": rundir.config_dict(config), "version": stir_jax.__version__,
      "jax_backend": jax.default_backend(), "jax_devices": [str(d) for d in jax.devices()],
      "parallelism": placement.parallelism, "num_devices": placement.num_devices,
      "process_count": jax.process_count(), "seeds_in_program": seeds_in_program,
      "host": host_info(),
  }


def host_info() -> dict:
  """What the epoch times were measured on: the CPU model (Linux's /proc/cpuinfo, else
  platform.processor()), the CPUs this process may use, the first device's kind, and the boot
  (Linux's boot id, else None): machines with one CPU name can differ in speed several times over
  (measured: 27 and 106 ms for the standard model's train step on two "AMD EPYC" 2-core
  machines), so the report compares epoch times only between runs of one boot. Also the malloc
  the process ran on (`stir_jax.allocator.loaded`: tcmalloc made the SiConv models' epochs
  1.6-1.7x shorter on one machine)."""
  cpu = None
  try:
    with open("/proc/cpuinfo") as f:
      cpu = next((line.split(":", 1)[1].strip() for line in f
                  if line.startswith("model name")), None)
  except OSError:
    pass
  import platform  # pylint: disable=g-import-not-at-top
  cpus = (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count())
  try:
    with open("/proc/sys/kernel/random/boot_id") as f:
      boot = f.read().strip() or None
  except OSError:
    boot = None
  return {"cpu": cpu or platform.processor() or None, "cpus": cpus,
          "device_kind": jax.devices()[0].device_kind, "boot_id": boot,
          "allocator": allocator.loaded()}
