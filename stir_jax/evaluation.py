"""Evaluation of a finished (or interrupted) run directory: per-scale generalisation and plots.

`evaluate(workdir)` is what eval.py calls. It restores the best checkpoint that training kept and
writes, next to the run:
  generalization.csv     one row: model, data, eval (scenario), s17..s64 test accuracy in [0, 1]
  accuracy_vs_scale.png  test accuracy against object size, training scales shaded
"""
from __future__ import annotations

import csv
import json
import pathlib

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from stir_jax import metrics, models, training
from stir_jax.data import pipeline
from stir_jax.training import RunError


def load_run_config(workdir: pathlib.Path) -> ml_collections.ConfigDict:
  cfg_path = workdir / "config.json"
  if not workdir.is_dir():
    raise RunError(f"{workdir} does not exist")
  if not cfg_path.exists():
    raise RunError(f"{workdir} is not a stir_jax run directory (no config.json)")
  try:
    return ml_collections.ConfigDict(json.loads(cfg_path.read_text()))
  except json.JSONDecodeError as e:
    raise RunError(f"{cfg_path} is not valid JSON ({e})") from None


def restore_model(workdir: pathlib.Path, config, data):
  """(model, best params) of a run, checked against the data's channel and class counts."""
  model = models.get_model(config.model, data.num_channels, data.num_classes, config.kernel_size,
                           config.interpolation,
                           **({"impl": config.impl} if training._takes_impl(config.model) else {}))
  target = jax.eval_shape(model.init, jax.random.PRNGKey(0),
                          jnp.zeros((1, 64, 64, data.num_channels), jnp.float32))["params"]
  if not (workdir / "checkpoints" / "best").is_dir():
    raise RunError(f"{workdir} has no best checkpoint (checkpoints/best); train it first")
  ckpt = training.Checkpoints(workdir)
  try:
    params, _ = ckpt.restore_best(target)
  except RunError:
    raise
  except Exception as e:  # orbax reports shape/structure mismatches in many exception types
    raise RunError(f"the checkpoint in {workdir} does not fit model {config.model!r} with "
                   f"{data.num_channels} channels and {data.num_classes} classes: "
                   f"{str(e).splitlines()[0][:200]}") from None
  finally:
    ckpt.close()
  return model, params


def dataset_name(config) -> str:
  return pathlib.Path(str(config.dataset)).stem


def evaluate(workdir: str | pathlib.Path) -> dict:
  """Restores the run's best parameters, measures per-scale test accuracy, writes CSV and PNG."""
  workdir = pathlib.Path(workdir)
  config = load_run_config(workdir)
  data = training.load_dataset(config)
  model, params = restore_model(workdir, config, data)
  eval_step = training.make_eval_step(model)
  test = training.test_metrics(eval_step, params, data, config)

  row = {"model": config.model, "data": dataset_name(config), "eval": config.scenario,
         **test["per_scale"]}
  write_generalization_csv(workdir / "generalization.csv", [row])
  plot_accuracy_vs_scale(workdir / "accuracy_vs_scale.png", test["per_scale"],
                         pipeline.scales_for(config.scenario, "train"),
                         title=f"{config.model} on {row['data']}, scenario {config.scenario}: "
                               f"test accuracy {test['accuracy']:.1%}")
  return {"test_accuracy": test["accuracy"], "per_scale": test["per_scale"]}


def write_generalization_csv(path: pathlib.Path, rows: list[dict]) -> None:
  fields = ["model", "data", "eval", *metrics.SCALE_COLUMNS]
  tmp = path.with_suffix(".csv.tmp")
  with open(tmp, "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=fields)
    writer.writeheader()
    for r in rows:
      writer.writerow({k: (f"{r[k]:.6f}" if k.startswith("s") and k[1:].isdigit() else r[k])
                       for k in fields})
  tmp.replace(path)


def plot_accuracy_vs_scale(path: pathlib.Path, per_scale: dict, train_scales, title: str) -> None:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  scales = np.asarray(metrics.SCALES)
  acc = np.asarray([per_scale[c] for c in metrics.SCALE_COLUMNS]) * 100
  fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=120)
  for lo, hi in _runs(sorted(train_scales)):
    ax.axvspan(lo - 0.5, hi + 0.5, color="tab:blue", alpha=0.12, lw=0,
               label="training scales" if lo == min(train_scales) else None)
  ax.plot(scales, acc, marker="o", ms=3, color="tab:blue", label="test accuracy")
  ax.set(xlabel="object size s (pixels)", ylabel="accuracy (%)", ylim=(0, 100),
         xlim=(scales[0] - 1, scales[-1] + 1), title=title)
  ax.title.set_fontsize(9)
  ax.grid(alpha=0.3)
  ax.legend(loc="lower center", fontsize=8)
  fig.tight_layout()
  fig.savefig(path)
  plt.close(fig)


def _runs(values: list[int]) -> list[tuple[int, int]]:
  """Contiguous runs of sorted integers: [17..32, 49..64] -> [(17, 32), (49, 64)]."""
  out = []
  for v in values:
    if out and v == out[-1][1] + 1:
      out[-1] = (out[-1][0], v)
    else:
      out.append((v, v))
  return out
