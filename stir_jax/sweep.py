"""Sweeps: a grid of runs (models x datasets x scenarios x learning rates x seeds) in one directory.

  python -m stir_jax.sweep --out runs/sweep --models standard,pixel_pool \\
      --datasets data/emoji.npz --scenarios 1,2,3,4 --seeds 1-5 [--lrs 1e-3,1e-2] \\
      [--config configs/paper.py] [--config.FIELD=VALUE ...] [--num_seeds_per_program N] [--dry_run]
  python -m stir_jax.sweep --out runs/mnist_scale --models mnist_cnn_28,mnist_ses_scalar_28 \\
      --datasets data/mnist_scale_0.npz,...,data/mnist_scale_5.npz --seeds 0 \\
      [--config configs/mnist_scale.py]

The datasets are STIR files (with the models of stir_jax.models) or MNIST-scale files (with the
models of stir_jax.models.mnist_scale; which kind a file is, is read from it); a model of one kind
on data of the other is an error before anything trains. Every setting gets an ordinary run
directory

  OUT/<model>/<data>/s<scenario>/lr<lr>/seed_<seed>/      STIR
  OUT/<model>/<data>/lr<lr>/seed_<seed>/                  MNIST-scale (no scenarios: --scenarios
                                                          does not apply)

(config.json, metrics.jsonl, checkpoints, results.json: see stir_jax.rundir), so any one of them
can be trained, resumed or evaluated on its own with train.py / eval.py. Finished settings are
skipped, interrupted ones resumed; rerunning the same command continues the sweep. --evaluate
runs eval.py --workdir on every finished run not evaluated yet (the pool indices' size correlation
of the report comes from it) and keeps the run's best parameters in params.msgpack
(`stir_jax.pretrained`). At the end the aggregation (stir_jax.eval.report, eval.py --runs) writes
OUT/report/. Config fields are set as train.py sets them: --config.FIELD=VALUE.

Several workers can share one grid on one machine or filesystem with flock: run the same command
in each, without --shard. A run directory is locked while it trains (stir_jax.rundir.claimed), so a
worker skips runs another is training and takes the next; a worker that ends frees its runs.
--shard I/N splits the grid into fixed parts instead (machines without a shared filesystem).

--num_seeds_per_program N trains up to N seeds of a model x data x scenario x lr together in one
program (stir_jax.train.engine.train_seeds) into the same seed directories. --dry_run prints the
plan (which settings are done, partial or new) and an estimate of its cost from a short timing
probe of each model's train and evaluation steps (compilation timed separately). Errors are one line
`error: ...` with exit status 2; runs that fail (e.g. a diverging learning rate) are reported and
the others go on.
"""
from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import math
import os
import pathlib
import sys
import time
from typing import NoReturn, Sequence

import ml_collections
import numpy as np

DEFAULT_CONFIG = "configs/paper.py"
MNIST_SCALE_CONFIG = "configs/mnist_scale.py"  # the default when every dataset is MNIST-scale
DEFAULT_SCENARIOS = "1,2,3,4"
STIR, MNIST_SCALE = "STIR", "MNIST-scale"  # the two kinds of data and models
REPO = pathlib.Path(__file__).resolve().parents[1]
GRID_FIELDS = ("model", "dataset", "scenario", "seed", "num_seeds")  # --lrs overrides learning_rate
STATUSES = ("done", "partial", "new")


class SweepError(RuntimeError):
  """A user error in the sweep's arguments or directory (printed as one line)."""


# --- arguments -------------------------------------------------------------------------------

def parse_int_list(spec: str, what: str) -> list[int]:
  """'1-5', '1,3,7', '1-3,10' -> sorted distinct non-negative ints."""
  out = set()
  for part in (p.strip() for p in spec.split(",")):
    if not part:
      continue
    try:
      lo, dash, hi = part.partition("-")
      lo, hi = int(lo), int(hi if dash else lo)
      if lo < 0 or hi < lo:
        raise ValueError
    except ValueError:
      raise SweepError(f"bad {what} {part!r} in {spec!r}; use e.g. 1-5 or 1,3,7") from None
    out.update(range(lo, hi + 1))
  if not out:
    raise SweepError(f"no {what} in {spec!r}")
  return sorted(out)


def parse_list(spec: str, what: str) -> list[str]:
  items = [s.strip() for s in spec.split(",") if s.strip()]
  if not items:
    raise SweepError(f"no {what} in {spec!r}")
  if len(set(items)) != len(items):
    raise SweepError(f"repeated {what} in {spec!r}")
  return items


def parse_lrs(spec: str) -> list[float]:
  out = []
  for s in parse_list(spec, "learning rates"):
    try:
      lr = float(s)
    except ValueError:
      raise SweepError(f"bad learning rate {s!r}") from None
    if not lr > 0 or not math.isfinite(lr):
      raise SweepError(f"learning rates must be positive, got {s}")
    out.append(lr)
  return out


def load_config(path: str) -> ml_collections.ConfigDict:
  """get_config() of a config file (its repository's `configs` package importable)."""
  p = pathlib.Path(path)
  if not p.exists() and not p.is_absolute() and (REPO / p).exists():
    p = REPO / p
  if not p.is_file():
    raise SweepError(f"config file {path} not found")
  for root in (str(p.resolve().parent.parent), str(pathlib.Path.cwd())):
    if root not in sys.path:
      sys.path.insert(0, root)
  spec = importlib.util.spec_from_file_location(f"_sweep_config_{p.stem}", p)
  module = importlib.util.module_from_spec(spec)
  try:
    spec.loader.exec_module(module)
    config = module.get_config()
  except Exception as e:  # any error in a user's config file is reported in one line
    raise SweepError(f"could not load {path}: {type(e).__name__}: {e}") from None
  return ml_collections.ConfigDict(json.loads(config.to_json()))  # unlocked, plain copy


def _defaults() -> dict:
  from stir_jax import experiment  # pylint: disable=g-import-not-at-top
  return experiment.DEFAULTS


def apply_overrides(config: ml_collections.ConfigDict, overrides: Sequence[str]) -> None:
  """--config.field=value (as train.py takes them): the value is converted to the field's type
  (bool, int, float, str)."""
  for item in overrides:
    if "=" not in item:
      raise SweepError(f"--config.FIELD=VALUE takes a value, got {item!r}")
    field, value = (s.strip() for s in item.split("=", 1))
    if field in GRID_FIELDS:
      raise SweepError(f"--config.{field} is not allowed: the grid sets it (--models, --datasets, "
                       "--scenarios, --seeds, --num_seeds_per_program)")
    if field in config:
      current = config[field]
    elif field in _defaults():
      current = _defaults()[field]  # a field an older config file lacks
    else:
      raise SweepError(f"--config.{field}: no such field in the config")
    try:
      if isinstance(current, bool):
        if value.lower() not in ("true", "false", "1", "0"):
          raise ValueError
        converted = value.lower() in ("true", "1")
      elif isinstance(current, int):
        converted = int(value)
      elif isinstance(current, float):
        converted = float(value)
      else:
        converted = value
    except ValueError:
      raise SweepError(f"--config.{field}={value}: not a {type(current).__name__}") from None
    config[field] = converted


# --- the plan --------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Group:
  """One model x dataset x scenario x learning rate; its seeds live in <dir>/seed_<s>. scenario is
  None for MNIST-scale data (no scenarios): the config keeps its own, unused, value."""
  model: str
  dataset: str
  scenario: int | None
  lr: float

  def dir(self, out: pathlib.Path) -> pathlib.Path:
    data = out / self.model.replace(":", "--") / pathlib.Path(self.dataset).stem
    if self.scenario is not None:
      data = data / f"s{self.scenario}"
    return data / f"lr{self.lr:g}"

  def config(self, base: ml_collections.ConfigDict, seed: int) -> ml_collections.ConfigDict:
    """The run config of one seed: the base config with the grid's fields, num_seeds = 1."""
    c = ml_collections.ConfigDict(json.loads(base.to_json()))
    c.model, c.dataset = self.model, self.dataset
    if self.scenario is not None:
      c.scenario = self.scenario
    c.learning_rate, c.seed, c.num_seeds = self.lr, seed, 1
    return c


@dataclasses.dataclass
class Run:
  group: Group
  seed: int
  config: ml_collections.ConfigDict
  dir: pathlib.Path
  status: str = "new"      # done, partial or new
  epochs_done: int = 0
  stopped: bool = False    # early stopping (or num_epochs) already ended its training


def run_status(run: Run) -> None:
  """Fills run.status/epochs_done/stopped from its directory; SweepError on a conflict."""
  from stir_jax.train import engine  # pylint: disable=g-import-not-at-top
  from stir_jax import rundir  # pylint: disable=g-import-not-at-top
  d, cfg = run.dir, run.dir / "config.json"
  if not cfg.exists():
    if d.exists() and any(d.iterdir()):
      raise SweepError(f"{d} is not empty and holds no stir_jax run (no config.json)")
    return
  try:
    found = json.loads(cfg.read_text())
  except json.JSONDecodeError:
    raise SweepError(f"{cfg} is not valid JSON") from None
  diff = rundir.config_differences(found, rundir.config_dict(run.config))
  if diff:
    raise SweepError(f"{d} holds a run with a different config (fields: {', '.join(diff)}); "
                     "use another --out or the same --config and --config.FIELD settings as before")
  if (d / "results.json").exists():
    run.status = "done"
    return
  run.status = "partial"
  meta = engine.fresh_meta()
  for row in rundir.read_metrics(d):  # replay early stopping over the logged epochs
    meta, _ = engine.early_stopping_update(meta, row["epoch"], row["val_accuracy"])
  run.epochs_done = meta["epoch"]
  run.stopped = (meta["epoch"] >= run.config.num_epochs
                 or engine.should_stop(meta, run.config.patience))


def model_kind(name: str) -> str:
  """STIR or MNIST-scale, from the model registry (a "package.module:Name" model is imported);
  SweepError for an unknown name."""
  from stir_jax import models  # pylint: disable=g-import-not-at-top
  try:
    return MNIST_SCALE if models.lookup(name).kind == "mnist_scale" else STIR
  except ValueError as e:
    raise SweepError(str(e)) from None


def data_kind(dataset: str) -> str:
  """MNIST-scale when the file has the MNIST-scale keys, else STIR (a missing emoji file, which
  the sweep generates on first use, is STIR)."""
  from stir_jax.data import mnist_scale  # pylint: disable=g-import-not-at-top
  return MNIST_SCALE if mnist_scale.is_mnist_scale_file(dataset) else STIR


def default_config(datasets_spec: str) -> str:
  """The config when --config is not given: configs/mnist_scale.py (the MNIST-scale protocol)
  when every dataset is an MNIST-scale file, else configs/paper.py."""
  datasets = [s.strip() for s in datasets_spec.split(",") if s.strip()]
  if datasets and all(data_kind(d) == MNIST_SCALE for d in datasets):
    return MNIST_SCALE_CONFIG
  return DEFAULT_CONFIG


def make_plan(args, base: ml_collections.ConfigDict) -> list[Run]:
  names = parse_list(args.models, "models")
  kinds = {m: model_kind(m) for m in names}
  datasets = parse_list(args.datasets, "datasets")
  for ds in datasets:
    if not pathlib.Path(ds).exists() and not pathlib.Path(ds).name.startswith("emoji"):
      raise SweepError(f"dataset {ds} does not exist")  # emoji files are generated on first use
  stems = [pathlib.Path(d).stem for d in datasets]
  if len(set(stems)) != len(stems):
    raise SweepError(f"two datasets share a file name ({', '.join(datasets)}); the run "
                     "directories are named by it")
  data_kinds = {ds: data_kind(ds) for ds in datasets}
  for model in names:
    for ds in datasets:
      if kinds[model] != data_kinds[ds]:
        from stir_jax import models  # pylint: disable=g-import-not-at-top
        mnist_models = ", ".join(models.names("mnist_scale"))
        raise SweepError(f"model {model!r} ({kinds[model]}) cannot train on {ds} "
                         f"({data_kinds[ds]} data): STIR models take STIR files, the MNIST-scale "
                         f"models ({mnist_models}) MNIST-scale files")
  scenarios = parse_int_list(args.scenarios or DEFAULT_SCENARIOS, "scenarios")
  if any(s not in (1, 2, 3, 4) for s in scenarios):
    raise SweepError(f"scenarios are 1..4, got {args.scenarios}")
  seeds = parse_int_list(args.seeds, "seeds")
  lrs = parse_lrs(args.lrs) if args.lrs else [float(base.learning_rate)]
  out = pathlib.Path(args.out)
  runs = []
  for model in names:
    for dataset in datasets:
      # MNIST-scale has no scenarios: one group per model x lr
      for scenario in (scenarios if data_kinds[dataset] == STIR else [None]):
        for lr in lrs:
          group = Group(model, dataset, scenario, lr)
          for seed in seeds:
            run = Run(group, seed, group.config(base, seed), group.dir(out) / f"seed_{seed}")
            run_status(run)
            runs.append(run)
  return runs


def ranges(values: Sequence[int]) -> str:
  """[1, 2, 3, 5] -> '1-3,5'; [] -> '-'."""
  values = sorted(values)
  if not values:
    return "-"
  parts, start, prev = [], values[0], values[0]
  for v in values[1:] + [None]:
    if v is not None and v == prev + 1:
      prev = v
      continue
    parts.append(f"{start}-{prev}" if prev > start else f"{start}")
    if v is not None:
      start = prev = v
  return ",".join(parts)


def groups_of(runs: list[Run]) -> dict[Group, list[Run]]:
  out: dict[Group, list[Run]] = {}
  for r in runs:
    out.setdefault(r.group, []).append(r)
  return out


def plan_table(runs: list[Run]) -> str:
  rows = [("model", "data", "scenario", "lr", "seeds", "done", "partial", "new")]
  for g, rs in groups_of(runs).items():
    by = {st: [r.seed for r in rs if r.status == st] for st in STATUSES}
    scenario = "-" if g.scenario is None else str(g.scenario)  # MNIST-scale: no scenarios
    rows.append((g.model, pathlib.Path(g.dataset).stem, scenario, f"{g.lr:g}",
                 ranges([r.seed for r in rs]), ranges(by["done"]), ranges(by["partial"]),
                 ranges(by["new"])))
  widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
  return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


# --- the estimate ----------------------------------------------------------------------------

def probe(config: ml_collections.ConfigDict, data, seeds_per_program: int,
          steps: int) -> dict[str, float]:
  """Seconds per train step and per evaluation batch of config.model on data's shapes (random
  inputs, after one compiling call), for one run or a program of seeds_per_program seeds. The
  steps are built as the engine builds them (train mode, input normalisation, image size)."""
  import jax  # pylint: disable=g-import-not-at-top
  from stir_jax import experiment  # pylint: disable=g-import-not-at-top
  from stir_jax.data import splits as inputs  # pylint: disable=g-import-not-at-top
  from stir_jax.train import placement as placement_lib  # pylint: disable=g-import-not-at-top
  from stir_jax.train import program  # pylint: disable=g-import-not-at-top
  prog = program.for_data(experiment.from_config(config), data)
  rng = np.random.default_rng(0)
  c, k, n = data.num_channels, data.num_classes, seeds_per_program
  size, per_scale = inputs.image_size(data), not inputs.is_mnist_scale(data)

  def batch(b):
    out = placement_lib.random_batch(rng, b, c, k, size)
    if not per_scale:
      del out["scale"]  # MNIST-scale batches carry no object sizes
    return out

  init = prog.init_state(0)
  place, train, evaluate = prog.placed(n)
  tb = place.put_train_batch(placement_lib.stack([batch(config.batch_size)] * n))
  eb = place.put_eval_batch(batch(place.eval_batch_size(config.eval_batch_size)))
  held = {"state": place.put_state(placement_lib.stack([init] * n)),
          "train": place.zero_sums(per_scale=False), "eval": place.zero_sums(per_scale=per_scale)}

  def timed(fn, count):
    t = time.perf_counter()
    for _ in range(count):
      jax.block_until_ready(fn())
    return (time.perf_counter() - t) / count

  def train_once():
    held["state"], held["train"] = train(held["state"], held["train"], tb)
    return held["train"]

  def eval_once():
    held["eval"] = evaluate(prog.eval_variables(held["state"]), held["eval"], eb)
    return held["eval"]

  first_train = timed(train_once, 1)
  train_s = timed(train_once, steps)
  first_eval = timed(eval_once, 1)
  eval_s = timed(eval_once, steps)
  return {"train_step": train_s, "eval_batch": eval_s,
          "compile": max(first_train - train_s, 0.0) + max(first_eval - eval_s, 0.0)}


def split_sizes(data, scenario: int | None) -> tuple[int, int, int]:
  """(train, valid, test) examples of one run: STIR at the scenario's sizes (the test pass at all
  48 sizes), MNIST-scale the file's splits."""
  from stir_jax.data import pipeline  # pylint: disable=g-import-not-at-top
  from stir_jax.data import splits as inputs  # pylint: disable=g-import-not-at-top
  if inputs.is_mnist_scale(data):
    return tuple(data.num_examples(split) for split in ("train", "valid", "test"))
  return (pipeline.num_examples(data, "train", scenario),
          pipeline.num_examples(data, "valid", scenario),
          pipeline.num_examples(data, "test", scales=pipeline.ALL_SCALES))


def estimate(runs: list[Run], base: ml_collections.ConfigDict, seeds_per_program: int,
             steps: int) -> tuple[float, list[str]]:
  """(seconds, probe lines) for the runs not yet done: remaining epochs x (train steps + valid
  batches) + one test pass + compilation, per run or per program of seeds."""
  from stir_jax.data import splits as inputs  # pylint: disable=g-import-not-at-top
  todo = [r for r in runs if r.status != "done"]
  timings: dict[tuple[str, str, int], dict] = {}
  lines, total = [], 0.0
  datas = {}
  for g, rs in groups_of(todo).items():
    if g.dataset not in datas:
      datas[g.dataset] = load_data(g.dataset)
    data = datas[g.dataset]
    config = rs[0].config
    k = min(seeds_per_program, len(rs))
    # the MNIST-scale realisations share their shapes: one probe per model serves them all
    name = (MNIST_SCALE if inputs.is_mnist_scale(data) else pathlib.Path(g.dataset).stem)
    key = (g.model, name if name == MNIST_SCALE else g.dataset, k)
    if key not in timings:
      timings[key] = probe(config, data, k, steps)
      t = timings[key]
      lines.append(f"  {g.model} on {name}: "
                   f"{t['train_step'] * 1e3:.1f} ms per train step, "
                   f"{t['eval_batch'] * 1e3:.1f} ms per evaluation batch, compile "
                   f"{t['compile']:.1f} s" + (f" ({k} seeds per program)" if k > 1 else ""))
    t = timings[key]
    n_train, n_valid, n_test = split_sizes(data, g.scenario)
    steps_per_epoch = math.ceil(n_train / config.batch_size)
    valid = math.ceil(n_valid / config.eval_batch_size)
    test = math.ceil(n_test / config.eval_batch_size)
    per_epoch = steps_per_epoch * t["train_step"] + valid * t["eval_batch"]
    programs = [rs[i:i + k] for i in range(0, len(rs), k)]
    for prog in programs:
      left = max(0 if r.stopped else config.num_epochs - r.epochs_done for r in prog)
      total += t["compile"] + left * per_epoch + test * t["eval_batch"]
  return total, lines


def load_data(dataset: str):
  """A dataset for the estimate (which never generates one)."""
  from stir_jax.data import splits as inputs  # pylint: disable=g-import-not-at-top
  from stir_jax import rundir  # pylint: disable=g-import-not-at-top
  path = pathlib.Path(dataset)
  if not path.exists():
    hint = (f"; a real sweep generates STIR-emoji first, or run: python -m stir_jax.data "
            f"generate --domain emoji --out {dataset}" if path.name.startswith("emoji") else "")
    raise SweepError(f"dataset {dataset} does not exist{hint}")
  try:
    return inputs.load_dataset(ml_collections.ConfigDict({"dataset": dataset}))
  except rundir.RunError as e:
    raise SweepError(str(e)) from None


def format_seconds(s: float) -> str:
  if s < 120:
    return f"{s:.0f} s"
  if s < 7200:
    return f"{s / 60:.1f} min"
  return f"{s / 3600:.1f} h"


# --- running ---------------------------------------------------------------------------------

def run_sweep(args, base: ml_collections.ConfigDict, runs: list[Run]) -> int:
  """Trains every run not done; returns the number of failed runs."""
  from tqdm.auto import tqdm  # pylint: disable=g-import-not-at-top
  from stir_jax.train import engine  # pylint: disable=g-import-not-at-top
  from stir_jax import distributed  # pylint: disable=g-import-not-at-top
  from stir_jax import rundir  # pylint: disable=g-import-not-at-top
  out = pathlib.Path(args.out)
  k = args.num_seeds_per_program
  done = sum(r.status == "done" for r in runs)
  failures: list[str] = []
  busy = 0
  bar = tqdm(total=len(runs), initial=done, desc="sweep", unit="run", dynamic_ncols=True,
             disable=not distributed.is_main())
  for g, rs in groups_of(runs).items():
    todo = [r for r in rs if r.status != "done"]
    if not todo:
      continue
    programs = [todo[i:i + k] for i in range(0, len(todo), k)] if k > 1 else [[r] for r in todo]
    for prog in programs:
      names = f"{g.dir(out).relative_to(out)}/seed_{ranges([r.seed for r in prog])}"
      bar.set_postfix_str(names)
      # the run's epochs in the bar: a conv3d run on 2 cores is an hour and more
      last = prog[0].config.num_epochs

      def show_epoch(epoch, names=names, last=last):
        bar.set_postfix_str(f"{names}, epoch {epoch}/{last} done")

      try:
        res = engine.train_seeds(prog[0].config, {r.seed: r.dir for r in prog}, progress=False,
                                 on_epoch_end=show_epoch)
        accs = ", ".join(f"{res[r.seed]['test_accuracy']:.3f}" for r in prog)
        bar.write(f"{names}: test accuracy {accs}")
      except rundir.RunBusy:  # another worker on the same grid has it: go on to the next
        busy += len(prog)
        bar.write(f"skipped: {names}: another process is training it")
      except rundir.RunError as e:
        failures.append(f"{names}: {e}")
        bar.write(f"failed: {names}: {e}")
      bar.update(len(prog))
  bar.close()
  if busy:
    print(f"{busy} run(s) skipped: other processes were training them (rerun this command once "
          "they end to see them finished)")
  for f in failures:
    print(f"failed: {f}", file=sys.stderr)
  return len(failures)


def evaluated(run_dir: pathlib.Path) -> bool:
  """Whether eval.py --workdir has evaluated the run (its last file: consistency.json for STIR,
  accuracy_vs_scale.csv for MNIST-scale)."""
  return ((run_dir / "consistency.json").exists()
          or (run_dir / "accuracy_vs_scale.csv").exists())


def evaluate_runs(runs: list[Run]) -> int:
  """--evaluate: `eval.py --workdir` for every finished run not evaluated yet (the pooling
  models' index correlations in the report need it); returns the number of failures."""
  from tqdm.auto import tqdm  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  from stir_jax.eval import evaluation  # pylint: disable=g-import-not-at-top
  from stir_jax import distributed  # pylint: disable=g-import-not-at-top
  from stir_jax import rundir  # pylint: disable=g-import-not-at-top
  from stir_jax import pretrained  # pylint: disable=g-import-not-at-top
  finished = [r for r in runs if (r.dir / "results.json").exists()]
  has_ckpt = {r.dir: (r.dir / "checkpoints" / "best").exists() for r in finished}
  has_params = {r.dir: pretrained.params_path(r.dir).exists() for r in finished}
  todo = [r for r in finished if not evaluated(r.dir)
          or (has_ckpt[r.dir] and not has_params[r.dir])]
  # A finished run kept without its checkpoints or parameters (a results folder from before runs
  # kept params.msgpack) cannot be evaluated again; say so and go on rather than fail the sweep
  gone = [r for r in todo if not has_ckpt[r.dir] and not has_params[r.dir]]
  for r in gone:
    print(f"not evaluated: {r.dir} has no checkpoints/best or {pretrained.PARAMS_FILE} (a "
          "finished run kept without its parameters); its results.json and generalization data "
          "stand", file=sys.stderr)
  todo = [r for r in todo if r not in gone]
  failures = 0
  for r in tqdm(todo, desc="evaluate", unit="run", dynamic_ncols=True,
                disable=not distributed.is_main() or not todo):
    try:
      # another worker on the same grid may be evaluating it: skip rather than write beside it
      with rundir.claimed([r.dir]):
        if not evaluated(r.dir):
          evaluation.evaluate(r.dir)
        # the best parameters stay with the run (a few hundred KB; git keeps no checkpoints)
        if (has_ckpt[r.dir] and not pretrained.params_path(r.dir).exists()
            and jax.process_count() == 1):
          pretrained.export(r.dir)
    except rundir.RunBusy:
      print(f"not evaluated here: another process holds {r.dir}", file=sys.stderr)
    except rundir.RunError as e:
      failures += 1
      print(f"failed: evaluating {r.dir}: {e}", file=sys.stderr)
  return failures


def _fail(message: str) -> NoReturn:
  print(f"error: {message}", file=sys.stderr)
  sys.exit(2)


class _Parser(argparse.ArgumentParser):
  def error(self, message):  # one line, exit 2 (not argparse's usage text)
    _fail(message)


def build_parser() -> argparse.ArgumentParser:
  p = _Parser(prog="python -m stir_jax.sweep",
              description="Run a grid of STIR runs into one directory, then aggregate them.")
  p.add_argument("--out", required=True, help="the sweep directory")
  p.add_argument("--models", required=True, help="comma-separated model names")
  p.add_argument("--datasets", required=True, help="comma-separated STIR files")
  p.add_argument("--scenarios", default=None, help="e.g. 1,2,3,4 or 2 (default: all); STIR "
                 "only, MNIST-scale data has no scenarios")
  p.add_argument("--seeds", required=True, help="e.g. 1-50 or 1,2,5")
  p.add_argument("--lrs", default=None, help="comma-separated learning rates (default: the "
                 "config's)")
  p.add_argument("--config", default=None, help=f"base config file (default: {DEFAULT_CONFIG}; "
                 f"{MNIST_SCALE_CONFIG} when every dataset is MNIST-scale)")
  p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                 help="the same as --config.FIELD=VALUE (kept for old scripts)")
  p.add_argument("--num_seeds_per_program", "--num-seeds-per-program", type=int, default=1,
                 help="train up to N seeds of a setting together in one program")
  p.add_argument("--dry_run", "--dry-run", action="store_true",
                 help="print the plan and an estimate only")
  p.add_argument("--probe_steps", "--probe-steps", type=int, default=3,
                 help="timed steps per model for the estimate (0: no estimate)")
  p.add_argument("--no_report", "--no-report", action="store_true",
                 help="skip the aggregation at the end")
  p.add_argument("--evaluate", action="store_true",
                 help="also run eval.py --workdir on every finished run not evaluated yet "
                      "(per-size csv, equivariance, pool indices and their size correlation)")
  p.add_argument("--shard", default=None, metavar="I/N",
                 help="run only part I of N disjoint parts of the grid (I = 0..N-1; default: "
                 "SLURM_ARRAY_TASK_ID / SLURM_ARRAY_TASK_COUNT when set, else everything)")
  from stir_jax import distributed  # pylint: disable=g-import-not-at-top
  distributed.add_arguments(p)
  return p


def parse_shard(spec: str | None, env=None) -> tuple[int, int]:
  """(I, N) from --shard I/N, else from a SLURM array job, else (0, 1): the whole grid."""
  env = os.environ if env is None else env
  if spec is None and env.get("SLURM_ARRAY_TASK_COUNT"):
    try:
      first = int(env.get("SLURM_ARRAY_TASK_MIN", "0") or 0)
      return _check_shard(int(env["SLURM_ARRAY_TASK_ID"]) - first,
                          int(env["SLURM_ARRAY_TASK_COUNT"]), "SLURM_ARRAY_TASK_ID")
    except (KeyError, ValueError):
      raise SweepError("SLURM_ARRAY_TASK_COUNT is set but SLURM_ARRAY_TASK_ID/MIN are not "
                       "integers") from None
  if spec is None:
    return 0, 1
  index, slash, count = spec.partition("/")
  try:
    return _check_shard(int(index), int(count), "--shard")
  except ValueError:
    raise SweepError(f"--shard takes I/N with 0 <= I < N, got {spec!r}") from None


def _check_shard(index: int, count: int, what: str) -> tuple[int, int]:
  if count < 1 or not 0 <= index < count:
    raise SweepError(f"{what}: part {index} of {count} does not exist (parts are 0..{count - 1})")
  return index, count


def shard_runs(runs: list[Run], index: int, count: int) -> list[Run]:
  """Part `index` of `count` disjoint parts of the plan: every count-th run, so that the models'
  costs spread evenly over the parts; together the parts are the whole grid."""
  return runs[index::count]


def main(argv: Sequence[str] | None = None) -> None:
  args, rest = build_parser().parse_known_args(argv)
  for arg in rest:  # --config.FIELD=VALUE, as train.py and eval.py take config fields
    if not arg.startswith("--config.") or "=" not in arg:
      _fail(f"unrecognized argument {arg!r} (config fields: --config.FIELD=VALUE)")
    args.set.append(arg[len("--config."):])
  from stir_jax import runtime  # pylint: disable=g-import-not-at-top
  from stir_jax.eval import report  # pylint: disable=g-import-not-at-top
  from stir_jax import distributed  # pylint: disable=g-import-not-at-top
  from stir_jax import rundir  # pylint: disable=g-import-not-at-top
  from stir_jax.train import preemption  # pylint: disable=g-import-not-at-top
  try:
    runtime.apply_xla_flags()
    distributed.initialize_from_args(args)
    if args.num_seeds_per_program < 1:
      raise SweepError("--num_seeds_per_program must be at least 1")
    if args.probe_steps < 0:
      raise SweepError("--probe-steps must be 0 or more")
    config_path = args.config or default_config(args.datasets)
    base = load_config(config_path)
    apply_overrides(base, args.set)
    part, parts = parse_shard(args.shard)
    runs = shard_runs(make_plan(args, base), part, parts)
    if not runs:
      raise SweepError(f"part {part} of {parts} of this grid is empty (the grid has fewer runs)")
    counts = {st: sum(r.status == st for r in runs) for st in STATUSES}
    n_groups = len(groups_of(runs))
    where = f" (part {part} of {parts} of the grid)" if parts > 1 else ""
    print(f"plan: {len(runs)} runs in {args.out}{where}, {n_groups} settings: "
          f"{counts['done']} done, {counts['partial']} partial, {counts['new']} new")
    print(plan_table(runs))
    if not args.config and config_path != DEFAULT_CONFIG:
      print(f"config: {config_path} (the MNIST-scale protocol; --config to change)")
    if args.scenarios and all(r.group.scenario is None for r in runs):
      print("note: --scenarios does not apply to MNIST-scale data (it has no scenarios)")
    if args.dry_run:
      if counts["done"] == len(runs):
        print("estimate: nothing left to train")
      elif args.probe_steps:
        seconds, lines = estimate(runs, base, args.num_seeds_per_program, args.probe_steps)
        import jax  # pylint: disable=g-import-not-at-top
        print(f"timing probe ({jax.devices()[0].platform}, {len(jax.devices())} device(s); "
              "random inputs, compilation timed separately):")
        print("\n".join(lines))
        stopping = (f"early stopping with patience {base.patience} usually ends runs sooner"
                    if base.patience > 0 else "no early stopping (patience 0)")
        print(f"estimate: up to {format_seconds(seconds)} for the {len(runs) - counts['done']} "
              f"runs left (num_epochs {base.num_epochs} each; {stopping}; input pipeline not "
              "timed)")
      return
    failed = run_sweep(args, base, runs) if counts["done"] < len(runs) else 0
    if counts["done"] == len(runs):
      print("every run is finished; nothing to train")
    if args.evaluate:
      failed += evaluate_runs(runs)
    if parts > 1 and not args.no_report and distributed.is_main():
      print(f"part {part} of {parts} done; once every part has finished: "
            f"python eval.py --runs={args.out} --out={pathlib.Path(args.out) / 'report'}")
    elif not args.no_report and distributed.is_main():
      out = report.aggregate(args.out, pathlib.Path(args.out) / "report")
      print(f"aggregated {out['runs']} runs into {pathlib.Path(args.out) / 'report' / 'report.md'}")
    if failed:
      raise SweepError(f"{failed} of {len(runs)} runs failed (listed above); rerun the same "
                       "command to retry them")
  except preemption.Preempted as e:  # SIGTERM/SIGINT: the run's position is saved
    print(f"\n{e}", file=sys.stderr, flush=True)
    sys.exit(preemption.EXIT_PREEMPTED)
  except (SweepError, rundir.RunError, ValueError, FileNotFoundError, PermissionError) as e:
    _fail(str(e))
  except KeyboardInterrupt:
    _fail("interrupted; rerun the same command to resume")


if __name__ == "__main__":
  from stir_jax import runtime  # pylint: disable=g-import-not-at-top
  runtime.prepare("train")  # one line for a missing extra; tcmalloc where installed
  main()
