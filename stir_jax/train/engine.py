"""The training engine: the paper's protocol (Adam, early stopping on validation accuracy, the
best-validation parameters tested) for one seed or many, on one device or many, on one host or many.
The same loop runs the MNIST-scale protocol (Sosnovik et al. 2020: Adam with a step learning rate,
a fixed number of epochs, normalised inputs, models with batch norm and dropout; configs/
mnist_scale.py) when config.dataset is an MNIST-scale file and config.model one of its models.

`train_and_evaluate(config, workdir)` is what train.py calls (config: a ConfigDict, checked by
`stir_jax.experiment.from_config`, or an `Experiment`); the sweep calls `train_seeds`. Both run
the one loop of `train_seeds`: the seeds are stacked along a leading axis (one seed is the
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
skipped. SIGTERM or SIGINT stops every process before the same step (`preemption`): each seed's
position inside the epoch is checkpointed (the step and the partial epoch's metric sums; the data
order is a function of seed and epoch) and `preemption.Preempted` raised; the rerun resumes there
and ends with the metrics and results of an uninterrupted run.

The pieces: `train_seeds` (skips finished seeds) -> `Trainer.open_runs` (directories, resume)
-> `Trainer.epoch` per epoch (`train_steps`, validation, `end_epoch`; `save_position` inside an
epoch) -> `Trainer.finish` (the test pass, results.json). The run directories are `workdir` for one seed and `workdir/seed_<s>` for several
(`rundir.seed_dir`); which one is only a question of where results go.
"""
from __future__ import annotations

import dataclasses
import itertools
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
from stir_jax import checkpoints, distributed, experiment, metrics, rundir, runtime
from stir_jax.data import splits as inputs
from stir_jax.train import preemption, program, state as state_lib
from stir_jax.train.placement import Placement, prefetch, stack, unstack
from stir_jax.errors import RunError

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
  """One seed's host-side state: its directory, experiment, latest host state and history, and
  where it is inside the epoch in progress (`step` steps done, their metric `sums`)."""
  seed: int
  dir: pathlib.Path
  exp: experiment.Experiment
  state: Any                     # host (numpy) TrainState at the run's position
  meta: dict
  history: list[dict]
  ckpt: checkpoints.Checkpoints
  step: int = 0                  # steps done in epoch meta["epoch"] + 1
  sums: dict | None = None       # their train metric sums (None: zero)
  failed: str | None = None
  tb: Any = None

  @property
  def config(self) -> ml_collections.ConfigDict:
    return self.exp.config

  def running(self) -> bool:
    p = self.exp.protocol
    return (self.failed is None and self.meta["epoch"] < p.num_epochs
            and not should_stop(self.meta, p.patience))


def start_or_resume(model, tx, seed: int, num_channels: int, workdir: pathlib.Path,
                    write: bool, image_size: int = 64, train_mode: bool = False,
                    on_broken: str = "restart") -> tuple[Any, dict, list[dict],
                                                         checkpoints.Checkpoints, dict]:
  """A seed's host state at its last saved position, or a fresh one.

  Returns (host state, early-stopping meta, metrics history, checkpoints, position) with position
  {"step": steps done in epoch meta["epoch"] + 1, "sums": their metric sums or None}. metrics.jsonl
  lines past the restored epoch (written by a run killed before its checkpoint) are dropped (when
  `write`).
  """
  state = jax.device_get(state_lib.create_train_state(
      model, tx, jax.random.PRNGKey(seed), num_channels, image_size, train_mode))
  ckpt = checkpoints.Checkpoints(workdir, main=write, barrier=distributed.barrier)
  meta, history, position = fresh_meta(), [], {"step": 0, "sums": None}
  restored = ckpt.restore_latest(state_lib.checkpoint_tree(state), on_broken)
  if restored is not None:
    tree, saved = restored
    state = state_lib.from_checkpoint_tree(state, tree)
    position = saved.get("position") or position
    meta = {k: saved[k] for k in fresh_meta()}
    history = [r for r in rundir.read_metrics(workdir) if r["epoch"] <= meta["epoch"]]
    if write:
      print(f"resuming from epoch {meta['epoch'] + 1}, step {position['step']} ({workdir})")
  if write:
    rundir.rewrite_metrics(workdir, history)
  return state, meta, history, ckpt, position


# --- the loop ----------------------------------------------------------------------------------

def train_and_evaluate(config: ml_collections.ConfigDict | experiment.Experiment,
                       workdir: str | os.PathLike, progress: bool = True,
                       on_epoch_end: Callable[[int], None] | None = None,
                       on_step: Callable[[int, int], None] | None = None) -> dict:
  """Trains config.model on config.dataset (early stopping unless config.patience is 0), then tests
  the best parameters. `config` is a ConfigDict (checked here: `experiment.from_config`) or an
  `Experiment`.

  config.num_seeds = N > 1 trains seeds config.seed .. config.seed + N - 1 together, one run
  directory workdir/seed_<s> each; otherwise workdir is the run directory. Returns results.json
  for one seed, and for several {"seeds", "runs", "test_accuracy" (mean), "test_accuracy_std",
  "workdir"}. `on_epoch_end(epoch)` is called after each epoch's checkpoints are written and
  `on_step(epoch, step)` after each train step is dispatched (tests use them to simulate a crash
  or a signal). Raises `preemption.Preempted` after saving when SIGTERM or SIGINT arrived.
  """
  exp = _experiment(config)
  workdir = pathlib.Path(workdir)
  seeds = exp.protocol.seeds
  if len(seeds) == 1:
    return train_seeds(exp, {seeds[0]: workdir}, progress, on_epoch_end, on_step)[seeds[0]]
  if (workdir / "config.json").exists() or (workdir / "results.json").exists():
    raise RunError(f"{workdir} is a single run's directory; several seeds write "
                   "<workdir>/seed_<s>/ and need a directory of their own")
  results = train_seeds(exp, {s: rundir.seed_dir(workdir, s) for s in seeds}, progress,
                        on_epoch_end, on_step)
  return summary(workdir, seeds, results)


def _experiment(config) -> experiment.Experiment:
  return config if isinstance(config, experiment.Experiment) else experiment.from_config(config)


def summary(workdir: pathlib.Path, seeds: Sequence[int], results: dict) -> dict:
  accs = np.array([results[s]["test_accuracy"] for s in seeds])
  return {"seeds": list(seeds), "runs": [results[s] for s in seeds],
          "test_accuracy": float(accs.mean()),
          "test_accuracy_std": float(accs.std(ddof=1)) if len(accs) > 1 else 0.0,
          "workdir": str(workdir)}


def train_seeds(config: ml_collections.ConfigDict | experiment.Experiment,
                dirs: dict[int, pathlib.Path], progress: bool = True,
                on_epoch_end: Callable[[int], None] | None = None,
                on_step: Callable[[int, int], None] | None = None) -> dict[int, dict]:
  """Trains the seeds of `dirs` (seed -> run directory) together; returns seed -> results.json.

  config's own seed and num_seeds are ignored (each directory gets the config with its seed and
  num_seeds = 1). Finished seeds are skipped (their config is still checked), the others resumed.

  Raises:
    RunBusy: another process is training one of the directories (nothing was written).
    RunError: a bad directory or config; after writing the other seeds' results, a seed whose
      training loss became non-finite (its last good checkpoint is kept).
    preemption.Preempted: SIGTERM or SIGINT; every seed's position was saved first.
  """
  exp = _experiment(config)
  seeds = [int(s) for s in dirs]
  if not seeds or len(set(seeds)) != len(seeds):
    raise RunError(f"need distinct seeds, got {seeds}")
  dirs = {s: pathlib.Path(d) for s, d in dirs.items()}
  exps = {s: exp.for_seed(s) if len(seeds) > 1 else exp for s in seeds}
  with rundir.claimed(dirs.values()):  # one process per directory: a second one gets RunBusy
    results = _finished(exps, dirs)
    todo = [s for s in seeds if s not in results]
    if not todo:
      return results
    trainer = Trainer(exp, progress, on_epoch_end, on_step)
    trainer.open_runs({s: exps[s] for s in todo}, dirs, total=len(seeds))
    try:
      with trainer.stop:
        while trainer.epoch():
          pass
    except BaseException:
      for r in trainer.runs:
        r.ckpt.close()
      raise
    return {**results, **trainer.finish()}


def _finished(exps: dict, dirs: dict) -> dict[int, dict]:
  """The results of the seeds that finished already (their config still checked)."""
  results = {}
  for s, d in dirs.items():
    if rundir.is_finished(d):
      rundir.check_workdir(exps[s].config, d)  # still refuse a different config
      results[s] = rundir.read_results(d)
  if distributed.is_main() and results:
    if len(results) == len(dirs):
      where = next(iter(dirs.values())) if len(dirs) == 1 else f"all {len(dirs)} seeds"
      print(f"{where}: finished (results.json exists); nothing to do")
    else:
      print(f"{len(results)} of {len(dirs)} seeds already finished")
  return results


class Trainer:
  """The seeds of one program: data, model, compiled steps, their runs; one epoch at a time."""

  def __init__(self, exp: experiment.Experiment, progress: bool,
               on_epoch_end: Callable[[int], None] | None,
               on_step: Callable[[int, int], None] | None):
    self.exp, self.progress, self.on_epoch_end, self.on_step = exp, progress, on_epoch_end, on_step
    self.main = distributed.is_main()
    self.data = inputs.load_dataset(exp.config)
    self.prog = program.for_data(exp, self.data)
    self.model, self.tx = self.prog.model, self.prog.tx
    self.steps_per_epoch, self.train_mode = self.prog.steps_per_epoch, self.prog.train_mode
    self.per_scale = not inputs.is_mnist_scale(self.data)  # STIR batches carry object sizes
    self.order = inputs.train_order(exp.config, self.data)  # None: a new order every epoch
    self.ran: set[int] = set()  # programs that ran a step (compiled)
    self.stop = preemption.StopSignals(save_every_minutes=exp.runtime.checkpoint_every_minutes)
    self.runs: list[SeedRun] = []
    self.on_device, self.device_state = None, None  # which runs the placed state holds

  def placed(self, n: int) -> tuple[Placement, Callable, Callable]:
    """The placement and compiled steps for n running seeds (built once per n)."""
    return self.prog.placed(n)

  def eval_variables(self, state):
    return self.prog.eval_variables(state)

  # -- setup ----------------------------------------------------------------------------------
  def open_runs(self, exps: dict, dirs: dict, total: int) -> None:
    """Prepares the run directories (process 0; the others check them) and restores every seed."""
    placement = self.placed(len(exps))[0]
    if self.main:
      for s, e in exps.items():
        rundir.prepare_workdir(e.config, dirs[s])
    distributed.barrier("run directories prepared")
    if not self.main:
      for s, e in exps.items():
        rundir.check_workdir(e.config, dirs[s])
    for s, e in exps.items():
      host, meta, history, ckpt, position = start_or_resume(
          self.model, self.tx, s, self.data.num_channels, dirs[s], self.main,
          inputs.image_size(self.data), self.train_mode, e.runtime.on_broken_checkpoint)
      self.runs.append(SeedRun(s, dirs[s], e, host, meta, history, ckpt, step=position["step"],
                               sums=position["sums"],
                               tb=rundir.tensorboard_writer(dirs[s]) if self.main else None))
    self.stop.mark_saved(min(r.meta["epoch"] for r in self.runs) + 1,
                         min(r.step for r in self.runs))
    self.total_seeds = total
    if self.progress and self.main:
      print(f"training {placement.describe()}")

  # -- one epoch ------------------------------------------------------------------------------
  def epoch(self) -> bool:
    """Trains the running seeds through the rest of their current epoch, validates, records and
    checkpoints; False when no seed is left to train. Seeds resumed at different steps of an epoch
    catch up one group at a time (the furthest first)."""
    active = [r for r in self.runs if r.running()]
    if not active:
      return False
    first = max(r.step for r in active)
    active = [r for r in active if r.step == first]
    placement, train_step, eval_step = self.placed(len(active))
    if self.on_device != [r.seed for r in active]:
      self.device_state = placement.put_state(stack([r.state for r in active]))
      self.on_device = [r.seed for r in active]
    epochs = [r.meta["epoch"] + 1 for r in active]
    start = time.perf_counter()
    sums = self.train_steps(active, epochs, first, placement, train_step)
    train_totals = placement.get_sums(sums)
    val_totals = placement.evaluate(
        eval_step, self.eval_variables(self.device_state),
        inputs.split_batches(self.data, "valid", self.exp.data.scenario,
                             batch_size=placement.eval_batch_size(
                                 self.exp.protocol.eval_batch_size)),
        per_scale=self.per_scale)
    seconds = time.perf_counter() - start
    improved = self.end_epoch(active, epochs, placement.get_state(self.device_state),
                              train_totals, val_totals, seconds)
    if self.progress and self.main:
      label = _label(epochs)
      _print_epoch(label, [r for r in active if r.failed is None], improved, seconds)
    if self.on_epoch_end is not None:
      self.on_epoch_end(max(epochs))
    return True

  def train_steps(self, active: list[SeedRun], epochs: list[int], first: int,
                  placement: Placement, train_step: Callable) -> dict:
    """Steps first .. steps_per_epoch - 1 of the active seeds' epochs; returns the device sums.
    Before each step the processes agree on a stop (signal) or a timed save."""
    p = self.exp.protocol
    streams = [itertools.islice(inputs.split_batches(
        self.data, "train", self.exp.data.scenario, batch_size=p.batch_size,
        seed=None if self.order is not None else inputs.epoch_seed(r.seed, e), order=self.order),
        first, None) for r, e in zip(active, epochs)]
    if first:
      sums = placement.put_state(stack([_sums_from_json(r.sums) for r in active]))
    else:
      sums = placement.zero_sums(per_scale=False)
    seeds_note = f" ({len(active)} seeds)" if self.total_seeds > 1 else ""
    bar = tqdm(total=self.steps_per_epoch, initial=first,
               desc=f"{_label(epochs)}/{p.num_epochs}{seeds_note}", unit="step",
               disable=not (self.progress and self.main), leave=False, dynamic_ncols=True)
    if len(active) not in self.ran:
      bar.set_postfix_str("compiling the train step ...", refresh=True)
    stacked = ({k: np.stack([b[k] for b in batches]) for k in batches[0]}
               for batches in zip(*streams))
    for i, batch in enumerate(prefetch(stacked, placement.put_train_batch), start=first):
      bits = distributed.any_process(self.stop.poll())
      if bits:
        self.save_position(active, epochs, i, placement, sums)
        if bits & preemption.PREEMPT:
          bar.close()
          raise preemption.Preempted(min(epochs), i)
      self.device_state, sums = train_step(self.device_state, sums, batch)
      if len(active) not in self.ran:
        self.ran.add(len(active))
        bar.set_postfix_str("", refresh=False)
      bar.update(1)
      if self.on_step is not None:
        self.on_step(max(epochs), i + 1)
      if (i + 1) % PROGRESS_EVERY == 0 and self.progress and self.main:
        host = placement.get_sums(sums)
        bar.set_postfix(loss=f"{np.mean(host['loss_sum'] / np.maximum(host['count'], 1)):.3f}")
    bar.close()
    for r in active:
      r.step, r.sums = 0, None
    return sums

  # -- checkpointing --------------------------------------------------------------------------
  def save_position(self, active: list[SeedRun], epochs: list[int], step: int,
                    placement: Placement, sums) -> None:
    """Checkpoints every active seed `step` steps into its epoch, with the partial epoch's metric
    sums (a resumed epoch then logs the row an uninterrupted one would). Step 0: the epoch-end
    checkpoint already holds that position."""
    if step > 0:
      host, totals = placement.get_state(self.device_state), placement.get_state(sums)
      for i, r in enumerate(active):
        state = unstack(host, i)
        position = {"epoch": epochs[i], "step": step,
                    "sums": {k: np.asarray(v[i]).tolist() for k, v in totals.items()}}
        r.ckpt.save_latest(int(state.step), state_lib.checkpoint_tree(state),
                           {**r.meta, "position": position})
    self.stop.mark_saved(min(epochs), step)

  def end_epoch(self, active: list[SeedRun], epochs: list[int], host, train_totals: dict,
                val_totals: dict, seconds: float) -> int:
    """Each seed's metrics row, early stopping, best and latest checkpoints; returns how many
    seeds improved. A seed with a non-finite training loss fails (its last checkpoint is kept)."""
    improved_count = 0
    for i, r in enumerate(active):
      train = metrics.finalize({k: v[i] for k, v in train_totals.items()})
      if not math.isfinite(train["loss"]):
        where = f"seed {r.seed}: " if self.total_seeds > 1 else ""
        r.failed = (f"{where}non-finite training loss in epoch {epochs[i]}; stopped, the last "
                    f"good checkpoint (epoch {r.meta['epoch']}) is kept in {r.dir}")
        if self.main:
          print(r.failed)
        self.on_device = None  # the next epoch re-places the others without it
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
                         batch_stats=r.state.batch_stats if self.train_mode else None)
      r.history.append(row)
      if self.main:
        rundir.rewrite_metrics(r.dir, r.history)
        rundir.log_scalars(r.tb, epochs[i], row)
      r.ckpt.save_latest(int(r.state.step), state_lib.checkpoint_tree(r.state), r.meta)
    self.stop.mark_saved(min(epochs) + 1, 0)
    return improved_count

  # -- the end --------------------------------------------------------------------------------
  def finish(self) -> dict[int, dict]:
    """Tests every finished seed's best parameters in one pass and writes its results.json."""
    results = {}
    tested = [r for r in self.runs if r.failed is None]
    if tested:
      placement, _, eval_step = self.placed(len(tested))
      best_states, bests = [], []
      for r in tested:
        params, best = r.ckpt.restore_best(r.state.params)
        batch_stats = (r.ckpt.restore_best_batch_stats(r.state.batch_stats) if self.train_mode
                       else r.state.batch_stats)
        best_states.append(r.state.replace(params=params, batch_stats=batch_stats))
        bests.append(best)
      scenario = self.exp.data.scenario
      totals = placement.evaluate(
          eval_step, placement.put_state(stack([self.eval_variables(b) for b in best_states])),
          inputs.test_batches(self.data, scenario,
                              placement.eval_batch_size(self.exp.protocol.eval_batch_size)),
          per_scale=self.per_scale)
      for i, r in enumerate(tested):
        test = inputs.test_results(self.data, scenario, {k: v[i] for k, v in totals.items()})
        results[r.seed] = _results(r, test, bests[i], placement, self.total_seeds)
        if self.main:
          rundir.write_json(r.dir / "results.json", results[r.seed])
    for r in self.runs:
      r.ckpt.close()
    failed = [r.failed for r in self.runs if r.failed is not None]
    if failed:
      raise RunError("; ".join(failed)
                     + (f" (the other {len(tested)} seeds finished)" if tested else ""))
    return results


def _label(epochs: list[int]) -> str:
  return (f"epoch {epochs[0]}" if len(set(epochs)) == 1
          else f"epochs {min(epochs)}-{max(epochs)}")


def _sums_from_json(sums: dict) -> dict:
  """Saved partial metric sums as the float32 arrays the device accumulates (exact: float32
  values round-trip through JSON's float64)."""
  zero = metrics.zero_stats(False)
  return {k: np.asarray(sums[k], dtype=np.asarray(v).dtype).reshape(np.shape(v))
          for k, v in zero.items()}


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
  the process ran on (`stir_jax.runtime.malloc_name`: tcmalloc made the SiConv models' epochs
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
          "allocator": runtime.malloc_name()}
