"""The paper's published results as data: per cell, per run and per object size.

Three files ship in ``stir_jax/resources`` (all from the authors' repository,
https://github.com/taltstidl/scale-equivariant-cnn, MIT; see NOTICE.md):

  paper_results.csv   one row per model x data x scenario: runs, the learning rate of the paper's
                      table, mean and std test accuracy (%), mean epoch seconds on their GPU
  paper_runs.csv      one row per run of that table: model, data, eval, lr, seed, test_acc (%),
                      best_val_acc (%), from the authors' run export ``scripts/clean.csv``
  paper_per_size.csv  per cell, the mean and the std over its runs of the test accuracy (%) at each
                      object size s17..s64, from ``plots/generalization.csv`` (the data of the
                      paper's Figure 5); only cells whose rows there are the run table's runs

``derive`` rebuilds the last two from the authors' files:

  python -m stir_jax.paper_tables CLEAN_CSV GENERALIZATION_CSV OUT_DIR

A cell's per-size rows count as the run table's runs when there are as many and their mean over
the cell's test sizes equals the table's mean test accuracy (to 0.05 points); the other cells
(the generalization file has more rows than runs there) are left out, and ``derive`` lists them.
"""
from __future__ import annotations

import csv
import importlib.resources
import pathlib
import sys
from collections import defaultdict

import numpy as np

from stir_jax import metrics

Cell = tuple[str, str, int]  # (model, data, scenario)


def _resource_rows(name: str) -> list[dict]:
  text = importlib.resources.files("stir_jax").joinpath(f"resources/{name}").read_text()
  return list(csv.DictReader(text.splitlines()))


def paper_results() -> dict[Cell, dict]:
  """The published run table: (model, data, scenario) -> {runs, lr, mean, std, epoch_seconds}."""
  return {(r["model"], r["data"], int(r["eval"])): {
      "runs": int(r["runs"]), "lr": float(r["lr"]), "mean": float(r["mean_test_acc"]),
      "std": float(r["std_test_acc"]), "epoch_seconds": float(r["mean_epoch_seconds"])}
          for r in _resource_rows("paper_results.csv")}


def paper_runs() -> dict[Cell, np.ndarray]:
  """(model, data, scenario) -> the test accuracies (%) of the paper's runs of that cell."""
  out = defaultdict(list)
  for r in _resource_rows("paper_runs.csv"):
    out[(r["model"], r["data"], int(r["eval"]))].append(float(r["test_acc"]))
  return {k: np.array(v) for k, v in out.items()}


def paper_run_validation() -> dict[Cell, np.ndarray]:
  """(model, data, scenario) -> the best validation accuracies (%) of the paper's runs of that
  cell, in the order of `paper_runs` (the same rows)."""
  out = defaultdict(list)
  for r in _resource_rows("paper_runs.csv"):
    out[(r["model"], r["data"], int(r["eval"]))].append(float(r["best_val_acc"]))
  return {k: np.array(v) for k, v in out.items()}


def paper_per_size() -> dict[Cell, dict]:
  """(model, data, scenario) -> {"runs": n, "mean": (48,), "std": (48,)}: test accuracy (%) per
  object size 17..64 over the paper's runs (the cells ``derive`` could match)."""
  out = {}
  for r in _resource_rows("paper_per_size.csv"):
    cell = out.setdefault((r["model"], r["data"], int(r["eval"])), {"runs": int(r["runs"])})
    cell[r["statistic"]] = np.array([float(r[c]) for c in metrics.SCALE_COLUMNS])
  return out


def _test_sizes(scenario: int) -> list[int]:
  from stir_jax.data import pipeline  # pylint: disable=g-import-not-at-top
  return pipeline.scales_for(scenario, "test")


def derive(clean_csv: str | pathlib.Path, generalization_csv: str | pathlib.Path,
           out_dir: str | pathlib.Path) -> list[Cell]:
  """Writes paper_runs.csv and paper_per_size.csv to out_dir from the authors' run export and
  per-size table; returns the cells left out of paper_per_size.csv (see the module docstring).

  Only the runs of the paper's table are kept: kernel 7, bicubic, at the cell's learning rate of
  paper_results.csv.
  """
  table = paper_results()
  runs = []
  with open(clean_csv, newline="") as f:
    for r in csv.DictReader(f):
      cell = (r["params.model"], r["params.data"], int(r["params.evaluation"]))
      if (cell in table and r["params.kernel_size"] == "7"
          and r["params.interpolation"] == "bicubic"
          and float(r["params.lr"]) == table[cell]["lr"]):
        runs.append({"model": cell[0], "data": cell[1], "eval": cell[2],
                     "lr": f"{float(r['params.lr']):g}", "seed": int(r["params.seed"]),
                     "test_acc": round(float(r["metrics.test_acc"]), 2),
                     "best_val_acc": round(float(r["metrics.best_acc"]), 2)})
  runs.sort(key=lambda r: (r["model"], r["data"], r["eval"], r["seed"]))
  by_cell = defaultdict(list)
  for r in runs:
    by_cell[(r["model"], r["data"], r["eval"])].append(r["test_acc"])
  sizes = defaultdict(list)
  with open(generalization_csv, newline="") as f:
    for r in csv.DictReader(f):
      sizes[(r["model"], r["data"], int(r["eval"]))].append(
          [float(r[c]) * 100 for c in metrics.SCALE_COLUMNS])
  per_size, left_out = [], []
  for cell in sorted(sizes):
    acc = np.array(sizes[cell])
    test = [s - metrics.MIN_SCALE for s in _test_sizes(cell[2])]
    ran = by_cell.get(cell, [])
    if len(acc) != len(ran) or abs(acc[:, test].mean() - np.mean(ran)) > 0.05:
      left_out.append(cell)
      continue
    for stat, values in (("mean", acc.mean(0)), ("std", acc.std(0, ddof=1))):
      per_size.append({"model": cell[0], "data": cell[1], "eval": cell[2], "runs": len(acc),
                       "statistic": stat,
                       **{c: round(float(v), 2) for c, v in zip(metrics.SCALE_COLUMNS, values)}})
  out_dir = pathlib.Path(out_dir)
  out_dir.mkdir(parents=True, exist_ok=True)
  for name, rows in (("paper_runs.csv", runs), ("paper_per_size.csv", per_size)):
    with open(out_dir / name, "w", newline="") as f:
      w = csv.DictWriter(f, fieldnames=list(rows[0]))
      w.writeheader()
      w.writerows(rows)
  return left_out


def main(argv: list[str]) -> int:
  if len(argv) != 3:
    print("usage: python -m stir_jax.paper_tables CLEAN_CSV GENERALIZATION_CSV OUT_DIR",
          file=sys.stderr)
    return 2
  try:
    left_out = derive(*argv)
  except (OSError, KeyError, ValueError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  print(f"wrote {argv[2]}/paper_runs.csv and paper_per_size.csv; per-size cells left out: "
        + (", ".join(f"{m}/{d}/{e}" for m, d, e in left_out) or "none"))
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
