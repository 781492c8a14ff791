"""The command line of `python -m stir_jax.bench`: flags, checks (one line, exit 2), dispatch."""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import NoReturn

from stir_jax import _optional, distributed, models, runtime
import stir_jax.bench

MODES = ("device", "models", "siconv", "pools", "seeds", "scaling", "scaling-probe", "malloc")


class _Parser(argparse.ArgumentParser):
  def error(self, message: str) -> NoReturn:  # one line, not argparse's usage text
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def build_parser() -> argparse.ArgumentParser:
  p = _Parser(prog="python -m stir_jax.bench",
              description=stir_jax.bench.__doc__.splitlines()[0])
  p.add_argument("what", choices=MODES)
  p.add_argument("--repeats", type=int, default=None,
                 help="timed calls per measurement (default 5; pools 3)")
  p.add_argument("--impl", choices=["auto", "direct", "fft"], default="auto",
                 help="models: the form of every model's layers (stir_jax.layers.forms)")
  p.add_argument("--models", default=None,
                 help="comma-separated model names (default: every STIR model; device --quick: "
                 "standard; models: standard is always timed first)")
  p.add_argument("--model", default="standard", help="seeds: the model")
  p.add_argument("--seeds", type=int, default=8, help="seeds: how many")
  p.add_argument("--steps", type=int, default=10, help="seeds: timed steps per seed")
  p.add_argument("--batch-size", type=int, default=16, help="seeds: batch size")
  p.add_argument("--batching", default="vmap,unroll", help="seeds: vmap and/or unroll")
  p.add_argument("--devices", type=int, default=8, help="scaling: fake CPU devices")
  p.add_argument("--epoch-models", default="pixel_pool",
                 help="scaling, malloc: models whose train.py epoch is timed ('' for none)")
  p.add_argument("--epochs", type=int, default=3, help="malloc: epochs per train.py run (2+)")
  p.add_argument("--rounds", type=int, default=1,
                 help="malloc: pairs of runs per model (alternating which goes first)")
  p.add_argument("--dataset", default="data/emoji.npz",
                 help="scaling, malloc: STIR file for train.py")
  p.add_argument("--layers", default="1,2", help="pools: the pixel_pool layers (1, 2)")
  p.add_argument("--pools", default="pixel,slice,energy", help="pools: pooling modes")
  p.add_argument("--out", default="device_report", help="device: report folder")
  p.add_argument("--budget-s", type=float, default=480.0,
                 help="device: seconds to spend; later items are skipped with a note")
  p.add_argument("--items", default=",".join(_device().ITEMS),
                 help="device: comma-separated items to time")
  p.add_argument("--quick", action="store_true", help="device: tiny shapes (a smoke test)")
  p.add_argument("--epochs-per-run", type=float, default=_device().EPOCHS_PER_RUN,
                 help="device: mean epochs per run for the grid estimate")
  distributed.add_arguments(p)
  return p


def _device():
  from stir_jax.bench import device  # pylint: disable=g-import-not-at-top
  return device


def _names(text: str) -> list[str]:
  return [n for n in text.split(",") if n]


def _check(args) -> str | None:
  """The first problem with the flags for this mode, as one line, or None."""
  if args.repeats is not None and args.repeats < 1:
    return "--repeats must be 1 or more"
  if args.what in ("models", "scaling", "scaling-probe", "seeds", "device"):
    names = [args.model] if args.what == "seeds" else _names(args.models or "")
    unknown = [n for n in names if n not in models.MODELS]
    if unknown:
      return f"unknown model(s) {', '.join(unknown)}; valid: {', '.join(models.MODELS)}"
  if args.what == "seeds":
    batchings = _names(args.batching)
    if not batchings or any(b not in ("vmap", "unroll") for b in batchings):
      return f"--batching takes vmap and/or unroll, got {args.batching!r}"
    if min(args.seeds, args.steps, args.batch_size) < 1:
      return "--seeds, --steps and --batch-size must be positive"
  if args.what == "malloc":
    if args.epochs < 2:
      return "--epochs must be 2 or more (epoch 1 compiles)"
    if args.rounds < 1:
      return "--rounds must be 1 or more"
    epoch_models = _names(args.epoch_models)
    bad = [n for n in epoch_models if n not in models.MODELS]
    if bad:
      return f"unknown model(s) {', '.join(bad)}"
    if not epoch_models:
      return "--epoch-models names no model"
    if not os.path.isfile(args.dataset):
      return f"no STIR file at {args.dataset}"
  if args.what == "pools":
    if not _names(args.layers) or any(l not in ("1", "2") for l in _names(args.layers)):
      return f"--layers takes 1 and/or 2, got {args.layers!r}"
    from stir_jax.layers.scale_pool import POOL_MODES  # pylint: disable=g-import-not-at-top
    if not _names(args.pools) or any(m not in POOL_MODES for m in _names(args.pools)):
      return f"--pools takes {', '.join(POOL_MODES)}, got {args.pools!r}"
  if args.what == "device":
    items = _names(args.items)
    if not items or any(i not in _device().ITEMS for i in items):
      return f"--items takes {', '.join(_device().ITEMS)}, got {args.items!r}"
    if not args.budget_s > 0:
      return "--budget-s must be positive"
    if not args.epochs_per_run > 0:
      return "--epochs-per-run must be positive"
  return None


def main(argv=None) -> int:
  args = build_parser().parse_args(argv)
  problem = _check(args)
  if problem:
    print(f"error: {problem}", file=sys.stderr)
    return 2
  if args.what in ("models", "seeds", "scaling", "scaling-probe", "malloc"):
    try:
      _optional.check("train")
    except _optional.MissingExtraError as e:
      print(f"error: bench {args.what}: {e}", file=sys.stderr)
      return 2
  runtime.apply_xla_flags()
  distributed.initialize_from_args(args)
  repeats = args.repeats or (3 if args.what == "pools" else 5)
  names = _names(args.models) if args.models is not None else models.model_names()
  if args.what == "device":
    _device().run(args.out, args.budget_s, _names(args.items), quick=args.quick, repeats=repeats,
                  epochs_per_run=args.epochs_per_run,
                  model_names=_names(args.models) if args.models is not None else None)
  elif args.what == "siconv":
    from stir_jax.bench import layers  # pylint: disable=g-import-not-at-top
    layers.bench_siconv(repeats)
  elif args.what == "pools":
    from stir_jax.bench import layers  # pylint: disable=g-import-not-at-top
    layers.bench_pools(_names(args.layers), _names(args.pools), repeats)
  elif args.what == "seeds":
    from stir_jax.bench import seeds  # pylint: disable=g-import-not-at-top
    batchings = _names(args.batching)
    seeds.print_seeds(seeds.bench_seeds(args.model, args.seeds, args.steps, args.batch_size,
                                        batchings), batchings)
  elif args.what == "scaling-probe":
    from stir_jax.bench import scaling  # pylint: disable=g-import-not-at-top
    for row in scaling.scaling_probe(names, repeats):
      print(json.dumps(row), flush=True)
  elif args.what == "scaling":
    from stir_jax.bench import scaling  # pylint: disable=g-import-not-at-top
    scaling.bench_scaling(names, args.devices, repeats, _names(args.epoch_models), args.dataset)
  elif args.what == "malloc":
    from stir_jax.bench import malloc  # pylint: disable=g-import-not-at-top
    malloc.bench_malloc(_names(args.epoch_models), args.dataset, args.epochs, args.rounds)
  else:  # models
    from stir_jax.bench import models as models_bench  # pylint: disable=g-import-not-at-top
    models_bench.bench_models(["standard"] + [n for n in names if n != "standard"], args.impl,
                              repeats)
  return 0
