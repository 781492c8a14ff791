"""Many seeds in one compiled program: N independent models trained side by side.

`config.num_seeds = N` (train.py dispatches here from `training.train_and_evaluate`) trains the
seeds config.seed, config.seed + 1, ..., config.seed + N - 1 together. Their parameters and
optimiser states are stacked along a leading seed axis and one jitted step updates them all; on
several devices the seed axis is sharded over the "seed" axis of a (seed, data) mesh and each
seed's batch over the "data" axis (see `SeedMesh`). Within a device the seeds are either batched
with vmap or unrolled, one copy of the single-seed step each (`config.seed_batching`, read with
config.get: "vmap", "unroll", or "auto" = unroll on CPU, vmap on accelerators). Every seed keeps
its own data order (`training.epoch_seed(seed, epoch)`), its own early stopping and its own
checkpoints. Unrolled, N seeds together give exactly the parameters of N separate runs (bitwise,
measured on CPU); vmapped, each step agrees to float rounding (~1e-7), which Adam can grow on
weights whose gradients are below its eps (measured: 4e-5 relative after 2 tiny epochs).

Layout: one ordinary run directory per seed,

  workdir/seed_<s>/    exactly what `train_and_evaluate` writes for the config with seed = s and
                       num_seeds = 1: config.json, metrics.jsonl, tensorboard/, checkpoints/latest,
                       checkpoints/best, results.json

so `eval.py --workdir workdir/seed_<s>` and `eval.py --runs workdir` work unchanged, and a seed
directory can be resumed (or found finished) by a single run as well as by a multi-seed program.
Nothing else is written under workdir.

A seed stops recording (metrics, checkpoints) once early stopping ends it; its slot keeps being
computed with empty batches (no examples, so nothing it computes is ever written) until every seed
has stopped or num_epochs is reached. Rerunning resumes every seed from its own checkpoints/latest,
even seeds that ended at different epochs.

  python -m stir_jax.multiseed bench [--model standard] [--seeds 8] [--steps 10]

times the train step of N seeds in one program against N sequential runs on this machine.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import pathlib
import sys
import time
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
from tqdm.auto import tqdm

import stir_jax
from stir_jax import metrics, models, training
from stir_jax.data import pipeline
from stir_jax.training import RunError

SEED_AXIS = "seed"
DATA_AXIS = "data"


# --- seeds and their directories -------------------------------------------------------------

def seed_dir(workdir: str | os.PathLike, seed: int) -> pathlib.Path:
  """The run directory of one seed: workdir/seed_<seed>."""
  return pathlib.Path(workdir) / f"seed_{int(seed)}"


def seed_config(config: ml_collections.ConfigDict, seed: int) -> ml_collections.ConfigDict:
  """An unlocked copy of config for one seed: seed = seed, num_seeds = 1 (a single run's config)."""
  out = ml_collections.ConfigDict(training.config_dict(config))
  out.seed = int(seed)
  out.num_seeds = 1
  return out


def is_finished(run_dir: pathlib.Path) -> bool:
  """Whether a run directory holds a finished run (what train_and_evaluate skips)."""
  return (run_dir / "results.json").exists() and (run_dir / "config.json").exists()


def stack(trees: Sequence[Any]) -> Any:
  """Host (numpy) stack of identically structured trees along a new leading seed axis."""
  return jax.tree.map(lambda *xs: np.stack([np.asarray(x) for x in xs]), *trees)


def unstack(tree: Any, i: int) -> Any:
  """Seed i of a stacked host tree."""
  return jax.tree.map(lambda x: x[i], tree)


def host_copy(tree: Any) -> Any:
  """numpy copy of a tree of (possibly sharded) arrays; every process gets the whole value."""

  def get(x):
    if not isinstance(x, jax.Array) or x.is_fully_addressable or x.is_fully_replicated:
      return np.array(x)  # a writable copy
    out = np.empty(x.shape, x.dtype)  # this process holds every seed (see SeedMesh)
    for shard in x.addressable_shards:
      out[shard.index] = np.asarray(shard.data)
    return out

  return jax.tree.map(get, tree)


# --- placement and steps ---------------------------------------------------------------------

SEED_BATCHING = ("auto", "vmap", "unroll")


def resolve_batching(batching: str) -> str:
  """"auto" -> "unroll" on CPU (exact and no slower there), "vmap" on accelerators."""
  if batching not in SEED_BATCHING:
    raise RunError(f"unknown seed_batching {batching!r}; valid: {', '.join(SEED_BATCHING)}")
  if batching == "auto":
    return "unroll" if jax.default_backend() == "cpu" else "vmap"
  return batching


class SeedMesh:
  """A (seed, data) device mesh and the compiled steps over stacked seeds.

  The seed axis takes gcd(num_seeds, local device count) devices and the data axis the rest, so
  on one device every seed is on it, with as many devices as seeds each device trains one seed,
  and otherwise seeds and batches are both split. Devices are laid out so that every process holds
  all seeds for its share of each batch (what `training.split_batches` yields per process). The
  steps run under shard_map: each device takes its seeds and its share of their batches, and the
  pure steps of training.py reduce over the "data" axis (their axis_name).

  batching, how a device runs its seeds inside the program:
    "vmap":   batched (one convolution with a group per seed): the fast form on accelerators;
              each step equals separate runs to float rounding (~1e-7), which Adam can amplify on
              weights with near-zero gradients (see the module tests for measured numbers).
    "unroll": one copy of the single-seed step per seed in the program: the same arithmetic as a
              separate run (bitwise on CPU), compile time grows with the seeds per device.
    "auto":   unroll on CPU, vmap elsewhere.

  Shapes: stacked state leaves (N, ...); train batches (N, B, ...) with B the global batch size;
  evaluation batches (B, ...) shared by all seeds; stats (N, ...).
  """

  def __init__(self, num_seeds: int, batching: str = "auto", devices=None):
    devices = list(devices) if devices is not None else jax.devices()
    local = sum(d.process_index == jax.process_index() for d in devices)
    self.num_seeds = num_seeds
    self.batching = resolve_batching(batching)
    self.num_devices = len(devices)
    self.process_count = jax.process_count()
    self.seed_devices = math.gcd(num_seeds, local)
    self.data_devices = len(devices) // self.seed_devices
    grid = np.array(devices, dtype=object).reshape(self.data_devices, self.seed_devices).T
    self.mesh = Mesh(grid, (SEED_AXIS, DATA_AXIS))
    self.seed_sharded = NamedSharding(self.mesh, P(SEED_AXIS))
    self.batch_sharded = NamedSharding(self.mesh, P(SEED_AXIS, DATA_AXIS))
    self.data_sharded = NamedSharding(self.mesh, P(DATA_AXIS))

  def describe(self) -> str:
    return (f"{self.num_seeds} seeds on {self.num_devices} device(s): seed axis "
            f"{self.seed_devices} x data axis {self.data_devices}, {self.batching}")

  def check_global_batch(self, batch_size: int, what: str = "batch_size") -> None:
    if batch_size % self.data_devices:
      raise RunError(f"{what} {batch_size} is not divisible by the {self.data_devices} devices "
                     f"of the data axis ({self.describe()})")

  def eval_batch_size(self, wanted: int) -> int:
    """wanted rounded up to a multiple of the data axis (evaluation pads and masks)."""
    return -(-wanted // self.data_devices) * self.data_devices

  def put_state(self, tree: Any) -> Any:
    """A stacked host tree (leading seed axis on every leaf) placed along the seed axis."""
    return jax.device_put(tree, self.seed_sharded)

  def _put(self, batch: dict, sharding: NamedSharding, axis: int) -> dict:
    out = {}
    for k, v in batch.items():
      v = np.asarray(v)
      shape = list(v.shape)
      shape[axis] *= self.process_count  # this process's share of the global batch
      out[k] = jax.make_array_from_process_local_data(sharding, v, tuple(shape))
    return out

  def _over_seeds(self, fn: Callable, in_axes: tuple) -> Callable:
    """fn for one seed -> fn over a device's stacked seeds (args with in_axes 0 are stacked)."""
    if self.batching == "vmap":
      return jax.vmap(fn, in_axes=in_axes)

    def unrolled(*args):
      n = next(jax.tree.leaves(a)[0].shape[0] for a, ax in zip(args, in_axes) if ax == 0)
      outs = [fn(*[unstack(a, i) if ax == 0 else a for a, ax in zip(args, in_axes)])
              for i in range(n)]
      return jax.tree.map(lambda *xs: jnp.stack(xs), *outs)

    return unrolled

  def train_step(self, step_fn: Callable) -> Callable:
    """step_fn(state, batch, axis_name) (training.train_step_fn) over stacked seeds and batches:
    (state (N, ...), host batch (N, B_local, ...)) -> (state, stats (N, ...)); state donated."""
    inner = self._over_seeds(lambda s, b: step_fn(s, b, DATA_AXIS), (0, 0))
    # check_vma=False: gradients stay per-device partial sums, as under pmap, and step_fn psums
    # them itself (with check_vma=True autodiff would psum them too, counting each twice).
    compiled = jax.jit(jax.shard_map(inner, mesh=self.mesh,
                                     in_specs=(P(SEED_AXIS), P(SEED_AXIS, DATA_AXIS)),
                                     out_specs=(P(SEED_AXIS), P(SEED_AXIS)), check_vma=False),
                       donate_argnums=0)

    def run(state, batch):
      return compiled(state, self._put(batch, self.batch_sharded, axis=1))

    run.compiled = compiled
    return run

  def eval_step(self, eval_fn: Callable) -> Callable:
    """eval_fn(params, batch, axis_name) (training.eval_step_fn) with stacked params and one
    batch for all seeds: (params (N, ...), host batch (B_local, ...)) -> stats (N, ...)."""
    inner = self._over_seeds(lambda p, b: eval_fn(p, b, DATA_AXIS), (0, None))
    compiled = jax.jit(jax.shard_map(inner, mesh=self.mesh,
                                     in_specs=(P(SEED_AXIS), P(DATA_AXIS)),
                                     out_specs=P(SEED_AXIS)))

    def run(params, batch):
      return compiled(params, self._put(batch, self.data_sharded, axis=0))

    return run


def evaluate_stacked(eval_step, params, batches) -> dict:
  """Merged sums over a split for every seed: stats with a leading seed axis (N, ...)."""
  total = None
  for batch in batches:
    total = metrics.merge(total, host_copy(eval_step(params, batch)))
  if total is None:
    raise RunError("an evaluation split is empty")
  return total


def _seed_stats(total: dict, i: int) -> dict:
  return {k: v[i] for k, v in total.items()}


def _empty_like(batch: dict) -> dict:
  """A batch of the same shapes without examples (mask all False): a stopped seed's input."""
  return {k: np.zeros_like(v) for k, v in batch.items()}


# --- the loop --------------------------------------------------------------------------------

def train_many(config: ml_collections.ConfigDict, workdir: str | os.PathLike,
               progress: bool = True,
               on_epoch_end: Callable[[int], None] | None = None) -> dict:
  """Trains seeds config.seed .. config.seed + config.num_seeds - 1 in one program.

  Returns the summary of `train_seeds`; each seed's results.json is in workdir/seed_<s>/.
  """
  n = int(config.get("num_seeds", 1))
  if n < 1:
    raise RunError(f"num_seeds must be at least 1, got {n}")
  return train_seeds(config, workdir, [config.seed + i for i in range(n)], progress=progress,
                     on_epoch_end=on_epoch_end)


def train_seeds(config: ml_collections.ConfigDict, workdir: str | os.PathLike,
                seeds: Sequence[int], progress: bool = True,
                on_epoch_end: Callable[[int], None] | None = None) -> dict:
  """Trains the given seeds of config together, one run directory workdir/seed_<s> each.

  Seeds whose directory is finished are skipped (their config is still checked); the others are
  resumed from their own checkpoints/latest when present. config's own seed and num_seeds are
  ignored. Only process 0 writes logs and results. `on_epoch_end(epoch)` is called after each
  epoch's checkpoints are written (epoch: the highest epoch any seed finished in that pass).

  Returns:
    {"seeds": [...], "runs": [results.json of each seed], "test_accuracy": mean over seeds,
     "test_accuracy_std": std over seeds (ddof 1; 0 for one seed), "workdir": str}.

  Raises:
    RunError: a bad directory or config; after writing the other seeds' results, a seed whose
      training loss became non-finite (its last good checkpoint is kept, as in a single run).
  """
  workdir = pathlib.Path(workdir)
  seeds = [int(s) for s in seeds]
  if not seeds or len(set(seeds)) != len(seeds):
    raise RunError(f"need distinct seeds, got {seeds}")
  if (workdir / "config.json").exists() or (workdir / "results.json").exists():
    raise RunError(f"{workdir} is a single run's directory; several seeds write "
                   "<workdir>/seed_<s>/ and need a directory of their own")
  main = jax.process_index() == 0
  configs = {s: seed_config(config, s) for s in seeds}
  dirs = {s: seed_dir(workdir, s) for s in seeds}

  results = {}
  for s in seeds:
    if is_finished(dirs[s]):
      training.prepare_workdir(configs[s], dirs[s])  # still refuse a different config
      results[s] = json.loads((dirs[s] / "results.json").read_text())
  todo = [s for s in seeds if s not in results]
  if not todo:
    print(f"{workdir}: all {len(seeds)} seeds are finished (results.json exists); nothing to do")
    return _summary(workdir, seeds, results)
  if len(todo) < len(seeds):
    print(f"{workdir}: {len(seeds) - len(todo)} of {len(seeds)} seeds already finished")

  data = training.load_dataset(config)
  model = training.build_model(config, data)
  mesh = SeedMesh(len(todo), config.get("seed_batching", "auto"))
  mesh.check_global_batch(config.batch_size)
  eval_bs = mesh.eval_batch_size(config.eval_batch_size)
  if main:
    for s in todo:
      training.prepare_workdir(configs[s], dirs[s])

  tx = training.make_optimizer(config)
  host_states, metas, histories, ckpts = [], [], [], []
  for s in todo:
    state, meta, history, ckpt = training.start_or_resume(model, tx, s, data.num_channels,
                                                          dirs[s], write=main)
    host_states.append(jax.device_get(state))
    metas.append(meta)
    histories.append(history)
    ckpts.append(ckpt)
  n = len(todo)
  host = stack(host_states)
  del host_states
  state = mesh.put_state(host)

  train_step = mesh.train_step(training.train_step_fn(model, tx))
  eval_step = mesh.eval_step(training.eval_step_fn(model))
  tbs = [training.tensorboard_writer(dirs[s]) if main else None for s in todo]
  steps_per_epoch = math.ceil(pipeline.num_examples(data, "train", config.scenario)
                              / config.batch_size)
  failed: dict[int, str] = {}

  def running(i: int) -> bool:
    return (i not in failed and metas[i]["epoch"] < config.num_epochs
            and not training.should_stop(metas[i], config.patience))

  if progress and main:
    print(f"training {n} seeds in one program ({mesh.describe()})")
  while True:
    active = [i for i in range(n) if running(i)]
    if not active:
      break
    epochs = {i: metas[i]["epoch"] + 1 for i in active}
    start = time.perf_counter()
    streams = [training.split_batches(data, "train", configs[todo[i]],
                                      batch_size=config.batch_size,
                                      seed=training.epoch_seed(todo[i], epochs[i]))
               for i in active]
    totals = {i: None for i in active}
    label = (f"epoch {min(epochs.values())}" if len(set(epochs.values())) == 1
             else f"epochs {min(epochs.values())}-{max(epochs.values())}")
    bar = tqdm(total=steps_per_epoch, desc=f"{label}/{config.num_epochs} ({len(active)} seeds)",
               unit="step", disable=not (progress and main), leave=False, dynamic_ncols=True)
    for batches in zip(*streams):
      by_seed = dict(zip(active, batches))
      empty = _empty_like(batches[0])
      stacked = {k: np.stack([by_seed.get(i, empty)[k] for i in range(n)]) for k in empty}
      state, stats = train_step(state, stacked)
      stats = host_copy(stats)
      for i in active:
        totals[i] = metrics.merge(totals[i], _seed_stats(stats, i))
      bar.update(1)
      bar.set_postfix(loss=f"{np.mean([t['loss_sum'] / t['count'] for t in totals.values()]):.3f}")
    bar.close()

    newly_failed = []
    trains = {}
    for i in active:
      trains[i] = metrics.finalize(totals[i])
      if not math.isfinite(trains[i]["loss"]):
        failed[i] = (f"seed {todo[i]}: non-finite training loss in epoch {epochs[i]}; stopped, "
                     f"the last good checkpoint (epoch {metas[i]['epoch']}) is kept in "
                     f"{dirs[todo[i]]}")
        newly_failed.append(i)
        print(failed[i])
    val_total = evaluate_stacked(eval_step, state.params,
                                 training.split_batches(data, "valid", config, batch_size=eval_bs))
    seconds = time.perf_counter() - start
    previous, host = host, host_copy(state)
    if newly_failed:  # keep the failed slots finite: back to their last good state
      for i in newly_failed:
        for new, old in zip(jax.tree.leaves(host), jax.tree.leaves(previous)):
          new[i] = old[i]
      state = mesh.put_state(host)
    improved_count = 0
    for i in active:
      if i in failed:
        continue
      s, train = todo[i], trains[i]
      val = metrics.finalize(_seed_stats(val_total, i))
      row = {"epoch": epochs[i], "train_loss": train["loss"], "train_accuracy": train["accuracy"],
             "val_loss": val["loss"], "val_accuracy": val["accuracy"], "epoch_seconds": seconds}
      metas[i], improved = training.early_stopping_update(metas[i], epochs[i], val["accuracy"])
      seed_state = unstack(host, i)
      if improved:
        improved_count += 1
        ckpts[i].save_best(epochs[i], seed_state.params,
                           {"epoch": epochs[i], "val_accuracy": val["accuracy"]})
      histories[i].append(row)
      if main:
        training.rewrite_metrics(dirs[s], histories[i])
        training.log_scalars(tbs[i], epochs[i], row)
      ckpts[i].save_latest(epochs[i], seed_state, metas[i])
    if progress and main:
      done = [i for i in active if i not in failed]
      if done:
        val_accs = [histories[i][-1]["val_accuracy"] for i in done]
        print(f"{label}: {len(done)} seeds | val acc mean {np.mean(val_accs):.3f} "
              f"(min {np.min(val_accs):.3f}, max {np.max(val_accs):.3f}) | "
              f"{improved_count} improved | {seconds:.1f}s")
    if on_epoch_end is not None:
      on_epoch_end(max(epochs.values()))

  tested = [i for i in range(n) if i not in failed]
  if tested:
    template = unstack(host, 0).params
    params, bests = [], {}
    for i in range(n):
      if i in failed:
        params.append(params[0] if params else template)  # a placeholder slot, never reported
        continue
      p, bests[i] = ckpts[i].restore_best(template)
      params.append(jax.device_get(p))
    test_total = evaluate_stacked(
        eval_step, mesh.put_state(stack(params)),
        training.split_batches(data, "test", config, batch_size=eval_bs, scales=metrics.SCALES))
    test_scales = pipeline.scales_for(config.scenario, "test")
    for i in tested:
      s, total = todo[i], _seed_stats(test_total, i)
      test = {**metrics.finalize(metrics.restrict(total, test_scales)),
              "per_scale": metrics.finalize(total)["per_scale"]}
      results[s] = _results(configs[s], test, bests[i], histories[i], metas[i], mesh, n)
      if main:
        training.write_json(dirs[s] / "results.json", results[s])
  for ckpt in ckpts:
    ckpt.close()
  if failed:
    raise RunError("; ".join(failed[i] for i in sorted(failed))
                   + (f" (the other {len(tested)} seeds finished)" if tested else ""))
  return _summary(workdir, seeds, results)


def _results(config, test: dict, best: dict, history: list[dict], meta: dict, mesh: SeedMesh,
             seeds_in_program: int) -> dict:
  """A seed's results.json: the fields of training.train_and_evaluate, plus seeds_in_program
  (epoch_seconds are the whole program's)."""
  stop = "early stopping" if training.should_stop(meta, config.patience) else "num_epochs reached"
  return {
      "model": config.model, "dataset": str(config.dataset), "scenario": config.scenario,
      "test_loss": test["loss"], "test_accuracy": test["accuracy"], "test_count": test["count"],
      "per_scale": test["per_scale"],
      "best_val_accuracy": best["val_accuracy"], "best_epoch": best["epoch"],
      "epochs_run": len(history), "stop_reason": stop,
      "mean_epoch_seconds": (float(np.mean([r["epoch_seconds"] for r in history]))
                             if history else None),
      "config": training.config_dict(config), "version": stir_jax.__version__,
      "jax_backend": jax.default_backend(), "jax_devices": [str(d) for d in jax.devices()],
      "parallelism": "jit", "num_devices": mesh.num_devices,
      "seeds_in_program": seeds_in_program,
  }


def _summary(workdir: pathlib.Path, seeds: list[int], results: dict) -> dict:
  accs = np.array([results[s]["test_accuracy"] for s in seeds])
  return {"seeds": seeds, "runs": [results[s] for s in seeds],
          "test_accuracy": float(accs.mean()),
          "test_accuracy_std": float(accs.std(ddof=1)) if len(accs) > 1 else 0.0,
          "workdir": str(workdir)}


# --- benchmark -------------------------------------------------------------------------------

def bench(model_name: str = "standard", num_seeds: int = 8, steps: int = 10,
          batch_size: int = 16, impl: str | None = None,
          batchings: Sequence[str] = ("vmap", "unroll"), num_channels: int = 1,
          num_classes: int = 36) -> dict:
  """Train-step throughput of num_seeds seeds in one program against num_seeds sequential runs.

  Both use random batches (batch_size, 64, 64, num_channels) already on the host, so only the
  compiled steps are timed: `steps` steps per seed after one warm-up (compiling) step. The
  sequential runs share one compiled step (separate processes would each compile it again).

  Returns:
    sequential_seconds, sequential_examples_per_second, sequential_compile_seconds, and per
    batching ("vmap", "unroll"): seconds, examples_per_second, speedup, compile_seconds, mesh.
  """
  kwargs = {"impl": impl} if impl else {}
  model = models.get_model(model_name, num_channels, num_classes, **kwargs)
  tx = training.make_optimizer(ml_collections.ConfigDict({"learning_rate": 1e-3}))
  rng = np.random.default_rng(0)
  batches = [{"image": rng.random((batch_size, 64, 64, num_channels), dtype=np.float32),
              "label": rng.integers(0, num_classes, batch_size).astype(np.int32),
              "scale": rng.integers(17, 65, batch_size).astype(np.int32),
              "mask": np.ones(batch_size, bool)} for _ in range(num_seeds)]
  inits = [jax.device_get(training.create_train_state(model, tx, jax.random.PRNGKey(s),
                                                      num_channels))
           for s in range(num_seeds)]
  out = {"model": model_name, "seeds": num_seeds, "steps": steps, "batch_size": batch_size,
         "device": f"{jax.devices()[0]} x{len(jax.devices())} ({jax.default_backend()})"}

  step = training.make_train_step(model, tx)
  states = [jax.tree.map(jnp.asarray, s) for s in inits]
  t = time.perf_counter()
  states[0], stats = step(states[0], batches[0])
  jax.block_until_ready(stats)
  out["sequential_compile_seconds"] = time.perf_counter() - t
  t = time.perf_counter()
  for i in range(num_seeds):
    for _ in range(steps):
      states[i], stats = step(states[i], batches[i])
    jax.block_until_ready((states[i], stats))
  out["sequential_seconds"] = time.perf_counter() - t

  examples = num_seeds * steps * batch_size
  out["sequential_examples_per_second"] = examples / out["sequential_seconds"]
  stacked = stack(batches)
  for batching in batchings:
    mesh = SeedMesh(num_seeds, batching)
    together = mesh.train_step(training.train_step_fn(model, tx))
    state = mesh.put_state(stack(inits))
    t = time.perf_counter()
    state, stats = together(state, stacked)
    jax.block_until_ready(stats)
    compile_seconds = time.perf_counter() - t
    t = time.perf_counter()
    for _ in range(steps):
      state, stats = together(state, stacked)
    jax.block_until_ready((state, stats))
    seconds = time.perf_counter() - t
    out[batching] = {"seconds": seconds, "compile_seconds": compile_seconds,
                     "examples_per_second": examples / seconds,
                     "speedup": out["sequential_seconds"] / seconds, "mesh": mesh.describe()}
  return out


def _fail(message: str):
  print(f"error: {message}", file=sys.stderr)
  sys.exit(2)


class _Parser(argparse.ArgumentParser):
  def error(self, message):  # one line, exit 2 (not argparse's usage text)
    _fail(message)


def main(argv: Sequence[str] | None = None) -> None:
  parser = _Parser(prog="python -m stir_jax.multiseed", description=__doc__.split("\n")[0])
  sub = parser.add_subparsers(dest="command", required=True)
  b = sub.add_parser("bench", help="N seeds in one program against N sequential runs")
  b.add_argument("--model", default="standard")
  b.add_argument("--seeds", type=int, default=8)
  b.add_argument("--steps", type=int, default=10, help="timed steps per seed (after warm-up)")
  b.add_argument("--batch-size", type=int, default=16)
  b.add_argument("--impl", default=None, help="conv implementation passed to the model")
  b.add_argument("--batching", default="vmap,unroll",
                 help="comma-separated seed batchings to time: vmap, unroll")
  b.add_argument("--json", action="store_true", help="print one JSON line instead")
  args = parser.parse_args(argv)
  if args.model not in models.model_names():
    _fail(f"unknown model {args.model!r}; valid models: {', '.join(models.model_names())}")
  if args.seeds < 1 or args.steps < 1 or args.batch_size < 1:
    _fail("--seeds, --steps and --batch-size must be positive")
  batchings = [b for b in args.batching.split(",") if b]
  if not batchings or any(b not in ("vmap", "unroll") for b in batchings):
    _fail(f"--batching takes vmap and/or unroll, got {args.batching!r}")
  try:
    out = bench(args.model, args.seeds, args.steps, args.batch_size, args.impl, batchings)
  except (ValueError, RunError) as e:
    _fail(str(e).splitlines()[0])
  if args.json:
    print(json.dumps(out))
    return
  print(f"device: {out['device']}; {out['model']}, batch {out['batch_size']}, "
        f"{out['steps']} timed steps per seed after a warm-up step")
  print(f"  {args.seeds} sequential runs:       {out['sequential_examples_per_second']:8.1f} "
        f"examples/s ({out['sequential_seconds']:.2f} s; compile "
        f"{out['sequential_compile_seconds']:.1f} s, once)")
  for batching in batchings:
    r = out[batching]
    print(f"  {args.seeds} seeds together, {batching:<6}: {r['examples_per_second']:8.1f} "
          f"examples/s ({r['seconds']:.2f} s; compile {r['compile_seconds']:.1f} s) "
          f"speedup {r['speedup']:.2f}x [{r['mesh']}]")


if __name__ == "__main__":
  main()
