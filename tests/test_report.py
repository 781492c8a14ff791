"""Aggregation over run directories, on hand-made results with known answers."""
import csv
import json
import subprocess
import sys

import numpy as np
import pytest

from stir_jax import metrics
from stir_jax.eval import report

REPO = __import__("pathlib").Path(__file__).resolve().parents[1]


def _fake_run(path, model, data, scenario, seed, acc, seconds):
  path.mkdir(parents=True)
  res = {"model": model, "dataset": f"data/{data}.npz", "scenario": scenario,
         "test_accuracy": acc, "best_val_accuracy": acc, "epochs_run": 3,
         "mean_epoch_seconds": seconds, "config": {"seed": seed, "learning_rate": 1e-3},
         "per_scale": {c: acc for c in metrics.SCALE_COLUMNS}}
  (path / "results.json").write_text(json.dumps(res))


def test_aggregate_known_numbers(tmp_path):
  runs = tmp_path / "runs"
  _fake_run(runs / "a", "standard", "emoji", 2, 1, 0.40, 1.0)
  _fake_run(runs / "b", "standard", "emoji", 2, 2, 0.50, 3.0)
  _fake_run(runs / "deep" / "c", "pixel_pool", "emoji", 2, 1, 0.80, 10.0)
  out = report.aggregate(runs, tmp_path / "report")
  assert out["runs"] == 3
  with open(tmp_path / "report" / "summary.csv") as f:
    rows = {r["model"]: r for r in csv.DictReader(f)}
  assert float(rows["standard"]["mean_test_acc"]) == pytest.approx(45.0)
  assert float(rows["standard"]["std_test_acc"]) == pytest.approx(np.std([40, 50], ddof=1), abs=0.01)
  assert float(rows["standard"]["paper_mean"]) == pytest.approx(39.11)   # published table
  assert float(rows["standard"]["difference"]) == pytest.approx(45.0 - 39.11, abs=0.01)
  assert float(rows["pixel_pool"]["paper_mean"]) == pytest.approx(76.6, abs=0.05)
  with open(tmp_path / "report" / "epoch_time.csv") as f:
    times = {r["model"]: r for r in csv.DictReader(f)}
  assert float(times["pixel_pool"]["relative_to_standard"]) == pytest.approx(5.0)
  with open(tmp_path / "report" / "results.csv") as f:
    assert len(list(csv.DictReader(f))) == 3
  md = (tmp_path / "report" / "report.md").read_text()
  assert "generalization.png" in md and "39.11" in md
  assert (tmp_path / "report" / "generalization.png").stat().st_size > 10_000


def test_aggregate_errors_are_one_line(tmp_path):
  (tmp_path / "empty").mkdir()
  proc = subprocess.run([sys.executable, "eval.py", f"--runs={tmp_path / 'empty'}",
                         f"--out={tmp_path / 'r'}"], cwd=REPO, capture_output=True, text=True)
  assert proc.returncode == 2
  assert proc.stderr.strip().startswith("error: no finished runs")
  assert len(proc.stderr.strip().splitlines()) == 1
