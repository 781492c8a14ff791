"""Trained models anyone can load: a finished run's best parameters in one small file.

`export(run_dir)` writes RUN_DIR/params.msgpack from the run's best checkpoint (checkpoints/best,
orbax): the parameters, the batch_stats of models with batch norm, and what it takes to rebuild the
module (model name, kernel size, interpolation, channels, classes, dtype, precision). The file is
flax.serialization msgpack: reading it needs flax and numpy, not orbax.

>>> module, variables = load("pixel_pool", scenario=2, seed=1)   # results/emoji/pixel_pool/...
>>> logits = module.apply(variables, images)                     # images: (batch, 64, 64, 1)
>>> module, variables = load_run("results/emoji/standard/emoji/s2/lr0.001/seed_1")

Command line (exports every finished run under DIR that still has checkpoints/best and no params
file yet, and lists the runs whose parameters are lost):

  python -m stir_jax.pretrained export results/emoji [--missing results/emoji/MISSING_PARAMS.md]
"""
from __future__ import annotations

import argparse
import json
import pathlib
import sys
from typing import Any, Sequence

import numpy as np

from stir_jax.errors import RunError

PARAMS_FILE = "params.msgpack"
FORMAT = "stir_jax.params/1"
# channels and classes of the four STIR domains (the data table of the STIR paper): used when a
# run's data file is not on this machine
STIR_DOMAINS = {"emoji": (1, 36), "mnist": (1, 10), "trafficsign": (3, 16), "aerial": (3, 9)}
REPO = pathlib.Path(__file__).resolve().parents[1]


def params_path(run_dir: str | pathlib.Path) -> pathlib.Path:
  return pathlib.Path(run_dir) / PARAMS_FILE


def _config(run_dir: pathlib.Path) -> dict:
  path = run_dir / "config.json"
  if not path.exists():
    raise RunError(f"{run_dir} is not a stir_jax run directory (no config.json)")
  try:
    found = json.loads(path.read_text())
  except json.JSONDecodeError as e:
    raise RunError(f"{path} is not valid JSON ({e})") from None
  from stir_jax import experiment  # pylint: disable=g-import-not-at-top
  return experiment.with_defaults(found)  # fields an older run's config lacks


def _data_shape(config: dict) -> tuple[int, int, int]:
  """(channels, classes, image side) of the run's data: from its file when it is here, else the
  STIR table."""
  path = pathlib.Path(str(config.get("dataset", "")))
  if path.is_file():
    from stir_jax.data import mnist_scale, stir_file  # pylint: disable=g-import-not-at-top
    try:
      data = (mnist_scale.load_mnist_scale(path) if mnist_scale.is_mnist_scale_file(path)
              else stir_file.load_stir(path))
    except stir_file.StirFileError as e:
      raise RunError(str(e)) from None
    side = data.image_size if mnist_scale.is_mnist_scale_file(path) else stir_file.IMAGE_SIZE
    return int(data.num_channels), int(data.num_classes), int(side)
  if path.stem in STIR_DOMAINS:
    return (*STIR_DOMAINS[path.stem], 64)
  raise RunError(f"the run's data {path} is not here and is none of the STIR domains "
                 f"({', '.join(STIR_DOMAINS)}): its channel and class counts are unknown")


def _host_tree(tree):
  """A tree of (jax or numpy) arrays as plain nested dicts of numpy arrays."""
  if isinstance(tree, dict) or hasattr(tree, "items"):
    return {str(k): _host_tree(v) for k, v in tree.items()}
  return np.asarray(tree)


def export(run_dir: str | pathlib.Path, overwrite: bool = False) -> pathlib.Path:
  """Writes RUN_DIR/params.msgpack from the run's best checkpoint; returns its path.

  RunError when the run has no results.json (unfinished), no checkpoints/best, or a params file
  already (unless overwrite).
  """
  run_dir = pathlib.Path(run_dir)
  config = _config(run_dir)
  out = params_path(run_dir)
  if out.exists() and not overwrite:
    raise RunError(f"{out} exists already")
  if not (run_dir / "results.json").exists():
    raise RunError(f"{run_dir} is not finished (no results.json)")
  if not (run_dir / "checkpoints" / "best").is_dir():
    raise RunError(f"{run_dir} has no best checkpoint (checkpoints/best): its parameters are lost")
  from stir_jax import checkpoints  # pylint: disable=g-import-not-at-top
  ckpt = checkpoints.Checkpoints(run_dir)
  try:
    params, meta = ckpt.restore_best(None)
    variables = {"params": _host_tree(params)}
    step = ckpt.best.latest_step()
    if (ckpt.best.directory / str(step) / "batch_stats").exists():
      variables["batch_stats"] = _host_tree(ckpt.restore_best_batch_stats(None))
  finally:
    ckpt.close()
  channels, classes, side = _data_shape(config)
  results = json.loads((run_dir / "results.json").read_text())
  info = {"model": config["model"], "kernel_size": config["kernel_size"],
          "interpolation": config["interpolation"], "impl": config["impl"],
          "dtype": config["dtype"], "precision": config["precision"], "num_channels": channels,
          "num_classes": classes, "image_size": side, "data": pathlib.Path(str(config.get("dataset"))).stem,
          "scenario": config.get("scenario"), "seed": config.get("seed"),
          "learning_rate": config.get("learning_rate"), "best_epoch": meta.get("epoch", step),
          "best_val_accuracy": results.get("best_val_accuracy"),
          "test_accuracy": results.get("test_accuracy")}
  _write(out, variables, info)
  return out


def _write(path: pathlib.Path, variables: dict, info: dict) -> None:
  from flax import serialization  # pylint: disable=g-import-not-at-top
  blob = serialization.msgpack_serialize(
      {"format": FORMAT, "info": json.dumps(info, sort_keys=True), "variables": variables})
  tmp = path.with_suffix(".msgpack.tmp")
  tmp.write_bytes(blob)
  tmp.replace(path)


def read(path: str | pathlib.Path) -> tuple[dict, dict]:
  """(variables, info) of a params file: variables {"params"[, "batch_stats"]} as numpy arrays,
  info the module's description (see `export`)."""
  from flax import serialization  # pylint: disable=g-import-not-at-top
  path = pathlib.Path(path)
  try:
    blob = serialization.msgpack_restore(path.read_bytes())
  except OSError as e:
    raise RunError(f"cannot read {path} ({e.strerror})") from None
  except Exception as e:  # msgpack raises several types on a damaged file
    raise RunError(f"{path} is not a stir_jax params file ({type(e).__name__})") from None
  if not isinstance(blob, dict) or blob.get("format") != FORMAT:
    raise RunError(f"{path} is not a stir_jax params file (format {FORMAT})")
  return blob["variables"], json.loads(blob["info"])


def build_module(info: dict):
  """The flax module a params file's info describes (`stir_jax.models.get_model`)."""
  from stir_jax import models  # pylint: disable=g-import-not-at-top
  args = dict(dtype=info["dtype"], precision=info["precision"])
  try:  # the registry: any model, with the arguments it declares (impl among them)
    return models.build(info["model"], num_channels=info["num_channels"],
                        num_classes=info["num_classes"], kernel_size=info["kernel_size"],
                        interpolation=info["interpolation"], impl=info["impl"], **args)
  except (ValueError, TypeError, ImportError) as e:
    raise RunError(str(e)) from None


def load_file(path: str | pathlib.Path) -> tuple[Any, dict]:
  """(module, variables) from a params file alone; the variables are checked against the module."""
  variables, info = read(path)
  module = build_module(info)
  _check(module, variables, info, path)
  return module, variables


def _check(module, variables: dict, info: dict, where) -> None:
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from stir_jax import models  # pylint: disable=g-import-not-at-top
  size = info.get("image_size", 64)
  shapes = jax.eval_shape(module.init, jax.random.PRNGKey(0),
                          jnp.zeros((1, size, size, info["num_channels"]), jnp.float32))
  target = {k: v for k, v in shapes.items() if k in ("params", "batch_stats")}
  try:
    models.check_params(target, variables)
  except ValueError as e:
    raise RunError(f"the parameters in {where} do not fit model {info['model']!r}: {e}") from None


def read_checked(run_dir: str | pathlib.Path, target: dict) -> dict:
  """The variables of RUN_DIR/params.msgpack, checked against target (a tree of shapes, e.g.
  `jax.eval_shape` of the module's init): what evaluation restores when a run keeps no
  checkpoints."""
  from stir_jax import models  # pylint: disable=g-import-not-at-top
  path = params_path(run_dir)
  variables, info = read(path)
  try:
    models.check_params(target, variables)
  except ValueError as e:
    raise RunError(f"the parameters in {path} do not fit model {info['model']!r}: {e}") from None
  return variables


def load_run(run_dir: str | pathlib.Path) -> tuple[Any, dict]:
  """(module, variables) of a run directory from its params file (`export` writes it).

  The module is built from the run's config.json (model, kernel size, interpolation) and the
  channel and class counts stored with the parameters.
  """
  run_dir = pathlib.Path(run_dir)
  config = _config(run_dir)
  path = params_path(run_dir)
  if not path.exists():
    hint = ("python -m stir_jax.pretrained export " + str(run_dir)
            if (run_dir / "checkpoints" / "best").is_dir() else "the run's parameters are lost")
    raise RunError(f"{run_dir} has no {PARAMS_FILE} ({hint})")
  variables, info = read(path)
  for key in ("model", "kernel_size", "interpolation"):
    if key in config:
      info[key] = config[key]
  module = build_module(info)
  _check(module, variables, info, path)
  return module, variables


def run_dir_of(model: str, scenario: int = 2, seed: int = 1, lr: float | None = None,
               data: str = "emoji", root: str | pathlib.Path | None = None) -> pathlib.Path:
  """The run directory ROOT/<model>/<data>/s<scenario>/lr<lr>/seed_<seed> (the sweep's layout);
  root defaults to the repository's results/<data>. lr None: the only learning rate there, else
  the paper's rate for the cell."""
  root = pathlib.Path(root) if root is not None else REPO / "results" / data
  cell = root / model / data / f"s{scenario}"
  if lr is not None:
    run = cell / f"lr{lr:g}" / f"seed_{seed}"
  else:
    found = sorted(p for p in cell.glob(f"lr*/seed_{seed}") if (p / "config.json").exists())
    if len(found) > 1:
      from stir_jax import models  # pylint: disable=g-import-not-at-top
      lr_paper = models.lookup(model).paper_lr(scenario, data)
      paper = [p for p in found if lr_paper and p.parent.name == f"lr{lr_paper:g}"]
      if not paper:
        raise RunError(f"{cell} holds seed {seed} at several learning rates "
                       f"({', '.join(p.parent.name for p in found)}): pass lr")
      found = paper
    if not found:
      raise RunError(f"no run of {model} on {data}, scenario {scenario}, seed {seed} under {root}")
    run = found[0]
  if not (run / "config.json").exists():
    raise RunError(f"no run at {run}")
  return run


def load(model: str, scenario: int = 2, seed: int = 1, lr: float | None = None,
         data: str = "emoji", root: str | pathlib.Path | None = None) -> tuple[Any, dict]:
  """(module, variables) of a published run by model, scenario, seed (and lr); see `run_dir_of`."""
  return load_run(run_dir_of(model, scenario, seed, lr, data, root))


def finished_runs(root: pathlib.Path) -> list[pathlib.Path]:
  """Every run directory under root with a results.json, sorted."""
  return sorted(p.parent for p in pathlib.Path(root).rglob("results.json"))


def export_all(root: str | pathlib.Path, out=sys.stdout) -> dict[str, list[pathlib.Path]]:
  """Exports every finished run under root that has checkpoints/best and no params file; returns
  {"exported", "present" (had a params file), "lost" (neither checkpoints/best nor a params
  file)}, printing a progress line per exported run."""
  root = pathlib.Path(root)
  if not root.is_dir():
    raise RunError(f"{root} is not a directory")
  runs = finished_runs(root)
  todo = [r for r in runs if not params_path(r).exists() and (r / "checkpoints" / "best").is_dir()]
  done = {"exported": [], "present": [r for r in runs if params_path(r).exists()],
          "lost": [r for r in runs if not params_path(r).exists()
                   and not (r / "checkpoints" / "best").is_dir()]}
  for i, run in enumerate(todo, 1):
    path = export(run)
    print(f"[{i}/{len(todo)}] {run.relative_to(root)}: {path.stat().st_size / 1024:.0f} KiB",
          file=out, flush=True)
    done["exported"].append(run)
  return done


def missing_markdown(root: pathlib.Path, lost: list[pathlib.Path], total: int) -> str:
  """The list of runs whose parameters are lost, as markdown."""
  lines = [f"# Runs under {root} whose trained parameters are lost\n",
           f"{len(lost)} of {total} finished runs have neither checkpoints/best nor "
           f"{PARAMS_FILE}: their checkpoints were not kept (results/ commits each run's small "
           "files only, and the machines that trained them are gone). Their results files and "
           "evaluation outputs stay. To get a run's parameters back, retrain it into a fresh "
           "directory with its config.json's settings (the sweep skips finished runs, so "
           "rerunning results/emoji/run_grid.sh does not), e.g. `python train.py "
           "--config=configs/paper.py --config.model=M --config.scenario=S --config.seed=N "
           "--workdir=runs/M_S_N` (training on CPU is deterministic for a seed), then "
           "`python -m stir_jax.pretrained export runs/`. From now on, exporting a run when it "
           f"finishes (`python -m stir_jax.pretrained export {root}`) keeps its parameters in "
           "git, a few hundred KB each.\n",
           "| run |", "|---|"]
  lines += [f"| {r.relative_to(root)} |" for r in lost]
  return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
  parser = argparse.ArgumentParser(prog="python -m stir_jax.pretrained",
                                   description="Export finished runs' best parameters.")
  sub = parser.add_subparsers(dest="command", required=True)
  ex = sub.add_parser("export", help="write params.msgpack for every finished run under DIR")
  ex.add_argument("dir", type=pathlib.Path)
  ex.add_argument("--missing", type=pathlib.Path, default=None,
                  help="also write the list of runs whose parameters are lost (markdown) here")
  args = parser.parse_args(argv)
  try:
    done = export_all(args.dir)
  except RunError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  total = sum(len(v) for v in done.values())
  print(f"exported {len(done['exported'])}, already had a params file {len(done['present'])}, "
        f"parameters lost {len(done['lost'])} (of {total} finished runs under {args.dir})")
  for run in done["lost"]:
    print(f"  lost: {run.relative_to(args.dir)}")
  if args.missing is not None:
    args.missing.write_text(missing_markdown(args.dir, done["lost"], total))
    print(f"wrote {args.missing}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
