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


def _fake_run(path, model, data, scenario, seed, acc, seconds, lr=1e-3):
  path.mkdir(parents=True)
  res = {"model": model, "dataset": f"data/{data}.npz", "scenario": scenario,
         "test_accuracy": acc, "best_val_accuracy": acc, "epochs_run": 3,
         "mean_epoch_seconds": seconds, "config": {"seed": seed, "learning_rate": lr},
         "per_scale": {c: acc for c in metrics.SCALE_COLUMNS}}
  (path / "results.json").write_text(json.dumps(res))


def test_aggregate_known_numbers(tmp_path):
  runs = tmp_path / "runs"
  _fake_run(runs / "a", "standard", "emoji", 2, 1, 0.40, 1.0)
  _fake_run(runs / "b", "standard", "emoji", 2, 2, 0.50, 3.0)
  _fake_run(runs / "deep" / "c", "pixel_pool", "emoji", 2, 1, 0.80, 10.0)
  res = json.loads((runs / "a" / "results.json").read_text())
  res.update(jax_backend="cpu", host={"cpu": "AMD EPYC", "cpus": 2, "device_kind": "cpu"})
  (runs / "a" / "results.json").write_text(json.dumps(res))
  out = report.aggregate(runs, tmp_path / "report")
  assert out["runs"] == 3
  with open(tmp_path / "report" / "summary.csv") as f:
    rows = {r["model"]: r for r in csv.DictReader(f)}
  assert float(rows["standard"]["mean_test_acc"]) == pytest.approx(45.0)
  assert float(rows["standard"]["std_test_acc"]) == pytest.approx(np.std([40, 50], ddof=1), abs=0.01)
  assert float(rows["standard"]["paper_mean"]) == pytest.approx(39.11)   # published table
  assert float(rows["standard"]["difference"]) == pytest.approx(45.0 - 39.11, abs=0.01)
  assert float(rows["pixel_pool"]["paper_mean"]) == pytest.approx(76.6, abs=0.05)
  assert rows["pixel_pool"]["std_test_acc"] == ""  # one run: no spread to state
  with open(tmp_path / "report" / "epoch_time.csv") as f:
    times = {r["model"]: r for r in csv.DictReader(f)}
  # relative to the standard run on the same machine: c and b unrecorded (3 s), not a (AMD, 1 s)
  assert float(times["pixel_pool"]["relative_to_standard"]) == pytest.approx(10.0 / 3.0, abs=0.01)
  assert float(times["standard"]["relative_to_standard"]) == pytest.approx(1.0)
  assert float(times["pixel_pool"]["median_epoch_seconds"]) == pytest.approx(10.0)  # no metrics
  # the machines: recorded for run a, not for b (a results.json from before the host record)
  assert times["standard"]["hosts"] == "AMD EPYC x2; unrecorded"
  assert times["pixel_pool"]["hosts"] == "unrecorded"


def test_epoch_time_is_relative_to_standard_on_the_same_machine(tmp_path):
  """Each run against standard on its machine, the same scenario first, else another scenario
  of the data scaled by its epoch's size; blank where standard never ran on the machine."""
  runs = tmp_path / "runs"
  fast, slow = ({"cpu": "Fast", "cpus": 2, "device_kind": "cpu", "boot_id": "b1"},
                {"cpu": "Slow", "cpus": 2, "device_kind": "cpu"})
  other_boot = dict(fast, boot_id="b2")  # the same CPU name on another machine: not compared
  for name, model, scenario, seed, secs, host in (
      ("s2", "standard", 2, 1, 4.0, slow), ("s4", "standard", 4, 1, 1.0, fast),
      ("s4b", "standard", 4, 2, 3.0, fast), ("p1", "pixel_pool", 2, 1, 40.0, slow),
      ("p2", "pixel_pool", 2, 2, 20.0, fast), ("h", "hermite", 2, 1, 9.0, None),
      ("e", "energy_pool", 2, 1, 8.0, other_boot)):
    _fake_run(runs / name, model, "emoji", scenario, seed, 0.5, secs)
    res = json.loads((runs / name / "results.json").read_text())
    res.update(host=host, jax_backend="cpu")
    (runs / name / "results.json").write_text(json.dumps(res))
  report.aggregate(runs, tmp_path / "report")
  with open(tmp_path / "report" / "epoch_time.csv") as f:
    times = {(r["model"], r["eval"]): r for r in csv.DictReader(f)}
  # p1: 40 / 4 (Slow, Mid2Rest) = 10; p2: 20 / (mean(1, 3) x 16 / 48) = 30 (Fast, All2All only:
  # an All2All epoch trains and validates on 48 sizes, a Mid2Rest epoch on 16); the cell: mean 20
  assert float(times[("pixel_pool", "2")]["relative_to_standard"]) == pytest.approx(20.0)
  assert times[("pixel_pool", "2")]["hosts"] == "Fast x2; Slow x2"
  assert times[("hermite", "2")]["relative_to_standard"] == ""  # no standard run unrecorded
  assert times[("energy_pool", "2")]["relative_to_standard"] == ""  # none on boot b2
  assert times[("energy_pool", "2")]["hosts"] == "Fast x2"


def test_epoch_time_compares_runs_under_one_malloc(tmp_path):
  """One boot, two allocators: a run is compared with standard under its own malloc only, and
  the host label names the malloc where it was recorded."""
  runs = tmp_path / "runs"
  base = {"cpu": "Fast", "cpus": 2, "device_kind": "cpu", "boot_id": "b1"}
  for name, model, seed, secs, alloc in (
      ("s_sys", "standard", 1, 4.0, "system"), ("s_tc", "standard", 2, 2.0, "tcmalloc"),
      ("p_tc", "pixel_pool", 1, 20.0, "tcmalloc"), ("e_je", "energy_pool", 1, 8.0, "jemalloc")):
    _fake_run(runs / name, model, "emoji", 2, seed, 0.5, secs)
    res = json.loads((runs / name / "results.json").read_text())
    res.update(host=dict(base, allocator=alloc), jax_backend="cpu")
    (runs / name / "results.json").write_text(json.dumps(res))
  report.aggregate(runs, tmp_path / "report")
  with open(tmp_path / "report" / "epoch_time.csv") as f:
    times = {r["model"]: r for r in csv.DictReader(f)}
  assert float(times["pixel_pool"]["relative_to_standard"]) == pytest.approx(10.0)  # 20 / 2
  assert times["energy_pool"]["relative_to_standard"] == ""  # no standard run under jemalloc
  assert times["standard"]["hosts"] == "Fast x2, system malloc; Fast x2, tcmalloc"
  assert times["energy_pool"]["hosts"] == "Fast x2, jemalloc"


def test_epoch_time_uses_each_runs_median_epoch(tmp_path):
  """A paused epoch (run b's 1000 s) moves the mean epoch, not the median the ratio uses."""
  runs = tmp_path / "runs"
  for name, model, seed, secs in (("a", "standard", 1, [9.0, 2.0, 2.0, 3.0]),
                                  ("b", "standard", 2, [8.0, 4.0, 1000.0, 4.0, 5.0]),
                                  ("c", "pixel_pool", 1, [30.0, 10.0, 12.0, 11.0])):
    _fake_run(runs / name, model, "emoji", 2, seed, 0.5, float(np.mean(secs)))
    (runs / name / "metrics.jsonl").write_text("".join(
        json.dumps({"epoch": i + 1, "epoch_seconds": s}) + "\n" for i, s in enumerate(secs)))
  report.aggregate(runs, tmp_path / "report")
  with open(tmp_path / "report" / "epoch_time.csv") as f:
    times = {r["model"]: r for r in csv.DictReader(f)}
  # medians: a 2.5, b 5.0 -> standard 3.75; c 11.5
  assert float(times["standard"]["median_epoch_seconds"]) == pytest.approx(3.75)
  assert float(times["standard"]["mean_epoch_seconds"]) == pytest.approx(
      (np.mean([9, 2, 2, 3]) + np.mean([8, 4, 1000, 4, 5])) / 2, abs=1e-3)
  assert float(times["pixel_pool"]["relative_to_standard"]) == pytest.approx(11.5 / 3.75, abs=0.01)
  # _fake_run logs epochs_run 3: a run costs 3 median epochs
  assert float(times["standard"]["run_minutes"]) == pytest.approx(round(3 * 3.75 / 60, 1))
  assert float(times["pixel_pool"]["mean_epochs"]) == 3
  with open(tmp_path / "report" / "results.csv") as f:
    rows = {r["run"]: r for r in csv.DictReader(f)}
  assert float(rows["b"]["median_epoch_seconds"]) == pytest.approx(5.0)
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


def test_publish_copies_small_files_and_reports_the_findings(tmp_path):
  runs = tmp_path / "sweep"
  for seed, (std, pix, energy) in enumerate([(0.40, 0.80, 0.05), (0.38, 0.74, 0.08)], start=1):
    _fake_run(runs / "standard" / f"seed_{seed}", "standard", "emoji", 2, seed, std, 1.0)
    _fake_run(runs / "pixel_pool" / f"seed_{seed}", "pixel_pool", "emoji", 2, seed, pix, 10.0)
    _fake_run(runs / "energy_pool" / f"seed_{seed}", "energy_pool", "emoji", 2, seed, energy, 9.0)
  (runs / "standard" / "seed_1" / "checkpoints" / "best").mkdir(parents=True)
  (runs / "pixel_pool" / "seed_1" / "consistency.json").write_text(
      json.dumps({"pool1_spearman": 0.5, "pool2_spearman": 0.25}))
  (runs / "unfinished").mkdir()
  (runs / "unfinished" / "config.json").write_text("{}")
  proc = subprocess.run([sys.executable, "eval.py", f"--runs={runs}",
                         f"--publish={tmp_path / 'results'}"], cwd=REPO, capture_output=True,
                        text=True)
  assert proc.returncode == 0, proc.stderr
  results = tmp_path / "results"
  assert not (results / "unfinished").exists()
  assert not (results / "standard" / "seed_1" / "checkpoints").exists()
  assert sorted(p.name for p in (results / "pixel_pool" / "seed_1").iterdir()) == [
      "consistency.json", "generalization.csv", "results.json"]
  with open(results / "standard" / "seed_2" / "generalization.csv") as f:
    (row,) = list(csv.DictReader(f))
  assert float(row["s17"]) == pytest.approx(0.38) and row["model"] == "standard"
  md = (results / "report" / "report.md").read_text()
  with open(results / "report" / "summary.csv") as f:
    rows = {r["model"]: r for r in csv.DictReader(f)}
  # paper: standard 39.11 +- 3.67 (emoji Mid2Rest), pixel_pool 76.6; ours 39.0 and 77.0
  assert rows["standard"]["within_2_paper_std"] == "True"
  assert float(rows["pixel_pool"]["mean_test_acc"]) == pytest.approx(77.0)
  assert "pixel_pool (77.0%, 2 runs) beats standard (39.0%, 2 runs)" in md
  assert "energy_pool reaches 6.5% against 77.0% for the best other model" in md
  assert ("per run: seed 1 5.0% (best validation 5.0%), seed 2 8.0% (best validation 8.0%)."
          in md)
  assert "pool1 with the object size 0.50 (mean over 1 run; per run 0.50 to 0.50): as the paper" in md
  # publishing in place only adds generalization.csv
  proc = subprocess.run([sys.executable, "eval.py", f"--runs={results}", f"--publish={results}"],
                        cwd=REPO, capture_output=True, text=True)
  assert proc.returncode == 0 and "published 6 finished runs" in proc.stdout, proc.stderr
  # fake runs have the same accuracy at every size: no plateau
  assert "pixel_pool: training sizes 77.0%, smaller sizes 77.0%, larger sizes 77.0%: not lower" in md


def test_equivariance_table_from_the_runs_npz(tmp_path):
  runs = tmp_path / "runs"
  for name, seed, e1, e2 in (("a", 1, [0.2, 0.4], [0.5, np.nan]), ("b", 2, [0.6, 0.6], [0.3, 0.3])):
    _fake_run(runs / name, "hermite", "emoji", 2, seed, 0.5, 1.0)
    np.savez(runs / name / "equivariance.npz", stage1=np.array(e1), stage2=np.array(e2),
             stage1_shifted=np.array(e1) / 2)
  _fake_run(runs / "c", "standard", "emoji", 2, 1, 0.4, 1.0)  # not evaluated: not in the table
  # a collapsed run (2.8% < 2 x 100 / 36): dead stage 2 (all NaN), stage 1 far off; left out
  _fake_run(runs / "d", "hermite", "emoji", 2, 3, 0.028, 1.0)
  np.savez(runs / "d" / "equivariance.npz", stage1=np.array([4.0, 4.0]),
           stage2=np.array([np.nan, np.nan]), stage1_shifted=np.array([4.0, 4.0]))
  report.aggregate(runs, tmp_path / "report")
  with open(tmp_path / "report" / "equivariance.csv") as f:
    rows = list(csv.DictReader(f))
  assert [r["model"] for r in rows] == ["hermite"] and rows[0]["runs"] == "2"
  assert rows[0]["collapsed_left_out"] == "1"
  # per run the mean over objects and pairs (NaN pairs left out), then the mean over runs
  assert float(rows[0]["stage1"]) == pytest.approx((0.3 + 0.6) / 2)
  assert float(rows[0]["stage2"]) == pytest.approx((0.5 + 0.3) / 2)
  assert float(rows[0]["stage1_shifted"]) == pytest.approx((0.15 + 0.3) / 2)
  assert rows[0]["stage2_shifted"] == ""
  assert "Equivariance error" in (tmp_path / "report" / "report.md").read_text()


def test_families_table_against_pixel_pool(tmp_path):
  """The field's other families get their own table: each peer's mean, its difference to
  pixel_pool's mean and Welch's p, next to pixel_pool, hermite and disco; one row per learning
  rate, all against pixel_pool at the paper's rate (1e-3 for emoji Mid2Rest); cells without a peer
  model get none."""
  runs = tmp_path / "runs"
  accs = {"pixel_pool": [0.70, 0.72, 0.74], "dss": [0.60, 0.61, 0.62], "gauss_der": [0.71, 0.75, 0.69],
          "hermite": [0.68, 0.69], "standard": [0.40, 0.41]}
  for model, vals in accs.items():
    for seed, acc in enumerate(vals, 1):
      _fake_run(runs / f"{model}_{seed}", model, "emoji", 2, seed, acc, 1.0)
  # the same cell at the paper's other rate: a peer row of its own, and pixel_pool at 1e-2 (more
  # runs than at 1e-3) is not the baseline
  for seed, acc in enumerate([0.80, 0.90], 1):
    _fake_run(runs / f"gauss_der_hi_{seed}", "gauss_der", "emoji", 2, seed, acc, 1.0, lr=1e-2)
  for seed, acc in enumerate([0.10, 0.20, 0.30, 0.40], 1):
    _fake_run(runs / f"pixel_hi_{seed}", "pixel_pool", "emoji", 2, seed, acc, 1.0, lr=1e-2)
  _fake_run(runs / "pixel_s2l", "pixel_pool", "emoji", 1, 1, 0.5, 1.0)  # no peer in Small2Large
  report.aggregate(runs, tmp_path / "report")
  with open(tmp_path / "report" / "families.csv") as f:
    table = list(csv.DictReader(f))
  rows = {(r["model"], float(r["lr"])): r for r in table}
  assert len(rows) == len(table)
  assert set(rows) == {("pixel_pool", 1e-3), ("pixel_pool", 1e-2), ("hermite", 1e-3),
                       ("dss", 1e-3), ("gauss_der", 1e-3), ("gauss_der", 1e-2)}  # no standard
  assert all(r["scenario"] == "Mid2Rest" and float(r["lr_pixel_pool"]) == 1e-3 for r in table)
  assert float(rows[("dss", 1e-3)]["mean_test_acc"]) == pytest.approx(61.0)
  assert float(rows[("dss", 1e-3)]["minus_pixel_pool"]) == pytest.approx(61.0 - 72.0)
  assert float(rows[("gauss_der", 1e-3)]["minus_pixel_pool"]) == pytest.approx(71.67 - 72.0,
                                                                              abs=0.01)
  assert float(rows[("gauss_der", 1e-2)]["minus_pixel_pool"]) == pytest.approx(85.0 - 72.0)
  assert float(rows[("pixel_pool", 1e-2)]["minus_pixel_pool"]) == pytest.approx(25.0 - 72.0)
  scipy_stats = pytest.importorskip("scipy.stats")
  expected = scipy_stats.ttest_ind([60, 61, 62], [70, 72, 74], equal_var=False).pvalue
  assert float(rows[("dss", 1e-3)]["welch_p"]) == pytest.approx(expected, abs=1e-4)
  assert float(rows[("dss", 1e-3)]["welch_p"]) < 0.05 < float(rows[("gauss_der", 1e-3)]["welch_p"])
  base = rows[("pixel_pool", 1e-3)]
  assert base["minus_pixel_pool"] == "" and base["welch_p"] == ""
  md = (tmp_path / "report" / "report.md").read_text()
  assert "## Beyond the paper" in md
  assert ("dss (lr 0.001) 61.0% (3 runs) is 11.0 points below pixel_pool (lr 0.001) 72.0% "
          "(3 runs); Welch's t-test p = ") in md
  assert "gauss_der (lr 0.001) 71.7% (3 runs) is 0.3 points below pixel_pool (lr 0.001) 72.0%" in md
  assert "gauss_der (lr 0.01) 85.0% (2 runs) is 13.0 points above pixel_pool (lr 0.001)" in md
  line = next(l for l in md.splitlines() if l.startswith("- emoji, Mid2Rest: gauss_der (lr 0.001)"))
  assert line.endswith("not a difference at the 5% level.")


def _fake_per_size_run(path, model, scenario, seed, per_size, lr=1e-3):
  """A run whose accuracy at size s is per_size[s - 17] (fractions); test accuracy is the mean
  over the scenario's test sizes, as the engine computes it."""
  from stir_jax.data import pipeline
  path.mkdir(parents=True)
  per = {c: float(v) for c, v in zip(metrics.SCALE_COLUMNS, per_size)}
  test = np.mean([per[f"s{s}"] for s in pipeline.scales_for(scenario, "test")])
  res = {"model": model, "dataset": "data/emoji.npz", "scenario": scenario,
         "test_accuracy": float(test), "best_val_accuracy": 1.0, "epochs_run": 3,
         "mean_epoch_seconds": 1.0, "config": {"seed": seed, "learning_rate": lr},
         "per_scale": per}
  (path / "results.json").write_text(json.dumps(res))


def test_report_places_runs_among_the_papers_runs(tmp_path):
  """Our runs against the paper's per-run and per-size results: the percentile among the paper's
  runs, the paper's size bands and the gap to its per-size mean, a learning rate the paper did not
  use for a cell kept apart with no paper columns, and the comparison figure."""
  from stir_jax import paper_tables
  ref_runs = paper_tables.paper_runs()[("pixel_pool", "emoji", 2)]
  ref_sizes = paper_tables.paper_per_size()[("pixel_pool", "emoji", 2)]["mean"] / 100
  runs = tmp_path / "runs"
  # seed 1 exactly on the paper's per-size mean, seed 2 five points below it everywhere
  _fake_per_size_run(runs / "a", "pixel_pool", 2, 1, ref_sizes)
  _fake_per_size_run(runs / "b", "pixel_pool", 2, 2, ref_sizes - 0.05)
  _fake_per_size_run(runs / "c", "pixel_pool", 2, 1, ref_sizes, lr=1e-2)  # not the paper's lr
  report.aggregate(runs, tmp_path / "report")
  with open(tmp_path / "report" / "summary.csv") as f:
    rows = {r["lr"]: r for r in csv.DictReader(f)}
  assert set(rows) == {"0.001", "0.01"}
  ours = float(rows["0.001"]["mean_test_acc"])
  assert ours == pytest.approx(76.61 - 2.5, abs=0.02)  # the paper's mean, less half of 5 points
  below = 100 * (np.mean(ref_runs < ours) + 0.5 * np.mean(ref_runs == ours))
  assert float(rows["0.001"]["paper_percentile"]) == pytest.approx(below, abs=0.05)
  assert 0 < below < 50
  assert rows["0.01"]["paper_lr"] == "0.001" and rows["0.01"]["paper_mean"] == ""
  assert rows["0.01"]["paper_percentile"] == "" and rows["0.01"]["within_2_paper_std"] == ""
  with open(tmp_path / "report" / "size_bands.csv") as f:
    bands = {r["lr"]: r for r in csv.DictReader(f)}
  # the mean curve is 2.5 points below the paper's at every size
  assert float(bands["0.001"]["mean_abs_gap"]) == pytest.approx(2.5, abs=0.06)
  small = [s - 17 for s in range(17, 33)]
  assert float(bands["0.001"]["paper_smaller"]) == pytest.approx(
      100 * ref_sizes[small].mean(), abs=0.06)
  assert float(bands["0.001"]["smaller"]) == pytest.approx(
      100 * ref_sizes[small].mean() - 2.5, abs=0.06)
  assert bands["0.01"]["paper_smaller"] == "" and bands["0.01"]["mean_abs_gap"] == ""
  with open(tmp_path / "report" / "results.csv") as f:
    per_run = {r["run"]: r for r in csv.DictReader(f)}
  assert float(per_run["a"]["paper_percentile"]) > float(per_run["b"]["paper_percentile"])
  assert per_run["c"]["paper_percentile"] == ""
  assert (tmp_path / "report" / "paper_comparison.png").stat().st_size > 10_000
  md = (tmp_path / "report" / "report.md").read_text()
  assert "paper_comparison.png" in md and "mean |ours - paper| over the 48 sizes 2.5 points" in md


def test_shipped_paper_tables_agree_with_the_papers_table():
  """paper_runs.csv and paper_per_size.csv (derived from the authors' run export and per-size
  table) reproduce paper_results.csv: every cell's runs, mean and std, and the per-size means
  averaged over each cell's test sizes."""
  from stir_jax.data import pipeline
  from stir_jax import paper_tables
  table = paper_tables.paper_results()
  runs = paper_tables.paper_runs()
  sizes = paper_tables.paper_per_size()
  assert set(runs) == set(table) and len(table) == 176
  for cell, ref in table.items():
    assert len(runs[cell]) == ref["runs"], cell
    assert runs[cell].mean() == pytest.approx(ref["mean"], abs=0.011), cell
    assert runs[cell].std(ddof=1) == pytest.approx(ref["std"], abs=0.011), cell
  # derive left out 5 MNIST cells whose per-size rows are not the table's runs; every emoji cell is in
  assert len(sizes) == 171 and all(c in sizes for c in table if c[1] == "emoji")
  for cell, ps in sizes.items():
    test = [s - 17 for s in pipeline.scales_for(cell[2], "test")]
    assert ps["mean"][test].mean() == pytest.approx(table[cell]["mean"], abs=0.06), cell
    assert ps["runs"] == table[cell]["runs"]


def test_derive_paper_tables_from_the_authors_files(tmp_path):
  """derive keeps the runs of the paper's table (kernel 7, bicubic, the cell's learning rate) and
  the per-size cells whose rows are those runs; a cell whose rows do not match is left out."""
  from stir_jax import paper_tables
  head = ("params.model,params.data,params.evaluation,params.lr,params.kernel_size,"
          "params.interpolation,params.seed,metrics.test_acc,metrics.best_acc\n")
  clean = tmp_path / "clean.csv"
  clean.write_text(head
                   + "standard,emoji,2,0.001,7,bicubic,1,40.0,99.0\n"
                   + "standard,emoji,2,0.001,7,bicubic,2,38.0,98.0\n"
                   + "standard,emoji,2,0.01,7,bicubic,3,10.0,50.0\n"      # another lr
                   + "standard,emoji,2,0.001,5,bicubic,4,10.0,50.0\n"     # another kernel
                   + "xu,emoji,2,0.001,7,bicubic,1,41.0,99.0\n")
  cols = ",".join(metrics.SCALE_COLUMNS)
  row = lambda model, test, train: (f"{model},emoji,2," + ",".join(
      str(train if 33 <= s <= 48 else test) for s in range(17, 65)) + "\n")
  gen = tmp_path / "gen.csv"
  gen.write_text(f"model,data,eval,{cols}\n" + row("standard", 0.40, 1.0)
                 + row("standard", 0.38, 1.0) + row("xu", 0.2, 1.0))  # xu: 20% is not its 41%
  left_out = paper_tables.derive(clean, gen, tmp_path / "out")
  assert left_out == [("xu", "emoji", 2)]
  with open(tmp_path / "out" / "paper_runs.csv") as f:
    kept = list(csv.DictReader(f))
  assert [(r["model"], r["seed"], r["test_acc"]) for r in kept] == [
      ("standard", "1", "40.0"), ("standard", "2", "38.0"), ("xu", "1", "41.0")]
  with open(tmp_path / "out" / "paper_per_size.csv") as f:
    ps = {r["statistic"]: r for r in csv.DictReader(f)}
  assert float(ps["mean"]["s17"]) == pytest.approx(39.0) and float(ps["mean"]["s40"]) == 100.0
  assert float(ps["std"]["s17"]) == pytest.approx(np.std([40, 38], ddof=1), abs=0.01)
  proc = subprocess.run([sys.executable, "-m", "stir_jax.paper_tables", str(clean)],
                        cwd=REPO, capture_output=True, text=True)
  assert proc.returncode == 2 and proc.stderr.count("\n") == 1


def test_runs_of_two_training_orders_are_not_merged(tmp_path):
  """Runs trained on the authors' fixed order and reshuffled runs of the same cell would average
  into one row: the report refuses the mix with one line and exit 2, and takes each alone."""
  runs = tmp_path / "runs"
  _fake_run(runs / "shuffled" / "a", "standard", "emoji", 2, 1, 0.40, 1.0)
  _fake_run(runs / "ordered" / "a", "standard", "emoji", 2, 1, 0.30, 1.0)
  res = json.loads((runs / "ordered" / "a" / "results.json").read_text())
  res["config"]["train_order"] = "paper"
  (runs / "ordered" / "a" / "results.json").write_text(json.dumps(res))
  proc = subprocess.run([sys.executable, "eval.py", f"--runs={runs}", f"--out={tmp_path / 'r'}"],
                        cwd=REPO, capture_output=True, text=True)
  assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
  assert "mix training orders (paper: 1 runs" in proc.stderr
  assert not (tmp_path / "r" / "report.md").exists()
  assert report.aggregate(runs / "ordered", tmp_path / "ordered_report")["runs"] == 1


def test_the_training_order_line_pairs_runs_of_the_same_seed(tmp_path):
  """A sibling folder <runs>_order holds runs on the authors' fixed order: report.md compares the
  cell's means (Welch) and, seed by seed, the runs that started from the same parameters."""
  runs, ordered = tmp_path / "grid", tmp_path / "grid_order"
  for seed, acc in ((1, 0.30), (2, 0.40), (10, 0.50)):
    _fake_run(runs / f"s{seed}", "standard", "emoji", 2, seed, acc, 1.0)
  for seed, acc in ((1, 0.35), (10, 0.45), (4, 0.60)):
    _fake_run(ordered / f"s{seed}", "standard", "emoji", 2, seed, acc, 1.0)
    res = json.loads((ordered / f"s{seed}" / "results.json").read_text())
    res["config"]["train_order"] = "paper"
    (ordered / f"s{seed}" / "results.json").write_text(json.dumps(res))
  report.aggregate(runs, tmp_path / "report")
  line = next(l for l in (tmp_path / "report" / "report.md").read_text().splitlines()
              if l.startswith("- Training order (grid_order): standard, emoji Mid2Rest"))
  assert "the authors' fixed order (paper) 46.7% (3 runs" in line
  assert "against 40.0% (3 runs)" in line and "a difference of +6.7 points; Welch's p = " in line
  assert line.endswith("the same seed (the same initial parameters) under the two orders: "
                       "seed 1 +5.0, seed 10 -5.0.")


def test_size_shape_names_the_sides_each_scenario_tests(tmp_path):
  """Small2Large tests larger sizes only, Large2Small smaller only, Mid2Rest both."""
  from stir_jax.data import pipeline
  runs = tmp_path / "runs"
  for name, scenario in (("s2l", 1), ("m2r", 2), ("l2s", 3)):
    _fake_run(runs / name, "standard", "emoji", scenario, 1, 0.5, 1.0)
    train = set(pipeline.scales_for(scenario, "train"))
    res = json.loads((runs / name / "results.json").read_text())
    res["per_scale"] = {f"s{s}": (0.99 if s in train else 0.2) for s in metrics.SCALES}
    (runs / name / "results.json").write_text(json.dumps(res))
  report.aggregate(runs, tmp_path / "report")
  md = (tmp_path / "report" / "report.md").read_text()
  lines = {e: next(l for l in md.splitlines() if l.startswith(f"- per size, emoji, {e}, "))
           for e in ("Small2Large", "Mid2Rest", "Large2Small")}
  assert "larger sizes 20.0%: plateau on the training sizes, lower on the larger sizes" in lines[
      "Small2Large"]
  assert "smaller sizes 20.0%: plateau on the training sizes, lower on the smaller sizes" in lines[
      "Large2Small"]
  assert ("smaller sizes 20.0%, larger sizes 20.0%: plateau on the training sizes, lower on both "
          "sides" in lines["Mid2Rest"])


def test_collapsed_runs_are_counted_against_the_papers(tmp_path):
  """A run below twice chance counts as collapsed, ours next to the paper's runs of the cell
  (paper_runs.csv: pixel_pool emoji All2All at 1e-2 has 16 of 50 runs below 5.6%, energy_pool
  emoji Mid2Rest 12 of 50); cells where neither side collapsed, and data without a known class
  count, get no line."""
  runs = tmp_path / "runs"
  for seed, acc in ((1, 0.0278), (2, 0.97), (3, 0.0556)):  # 5.56% is not below 2 x 100 / 36
    _fake_run(runs / f"p{seed}", "pixel_pool", "emoji", 4, seed, acc, 1.0, lr=1e-2)
  for seed, acc in ((1, 0.40), (2, 0.38)):
    _fake_run(runs / f"s{seed}", "standard", "emoji", 2, seed, acc, 1.0)
    _fake_run(runs / f"e{seed}", "energy_pool", "emoji", 2, seed, 0.09, 1.0)
    _fake_run(runs / f"x{seed}", "standard", "fashion", 2, seed, 0.01, 1.0)
  report.aggregate(runs, tmp_path / "report")
  lines = [l for l in (tmp_path / "report" / "report.md").read_text().splitlines()
           if " collapsed (" in l]
  assert lines == [
      "- emoji, Mid2Rest, energy_pool: 0 of 2 runs collapsed (test accuracy below 5.6%, 2x "
      "chance); the paper: 12 of 50.",
      "- emoji, All2All, pixel_pool: 1 of 3 runs collapsed (test accuracy below 5.6%, 2x "
      "chance): seed 1 2.8%; the paper: 16 of 50."]


def test_index_correlation_leaves_collapsed_runs_out(tmp_path):
  """The mean Spearman correlation of a cell is over its runs that did not collapse, and says how
  many it left out; a NaN correlation (a pool that always picks one size) is left out too."""
  runs = tmp_path / "runs"
  for seed, acc, rho in ((1, 0.0278, -0.15), (2, 0.97, 0.3), (3, 0.96, 0.5), (4, 0.95, np.nan)):
    _fake_run(runs / f"p{seed}", "pixel_pool", "emoji", 4, seed, acc, 1.0, lr=1e-2)
    (runs / f"p{seed}" / "consistency.json").write_text(json.dumps({"pool1_spearman": rho}))
  report.aggregate(runs, tmp_path / "report")
  (line,) = [l for l in (tmp_path / "report" / "report.md").read_text().splitlines()
             if "chosen by pool1" in l]
  assert "object size 0.40 (mean over 2 runs, 1 collapsed left out;" in line


def test_level_table_from_the_runs_levels_csv(tmp_path):
  """An ensemble run's levels.csv becomes per-band rows: each level's accuracy, the average's, and
  how far the average falls short of the best single level; runs without the file give none."""
  runs = tmp_path / "runs"
  _fake_run(runs / "e", "ensemble", "emoji", 1, 1, 0.5, 1.0)   # Small2Large: training 17..32
  _fake_run(runs / "s", "standard", "emoji", 1, 1, 0.5, 1.0)
  acc = {"64 px": [0.9] * 16 + [0.1] * 32, "32 px": [0.3] * 16 + [0.8] * 32,
         "16 px": [0.0] * 48, "average": [1.0] * 16 + [0.5] * 32}
  with open(runs / "e" / "levels.csv", "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["level", "quantity", *metrics.SCALE_COLUMNS])
    for level, values in acc.items():
      w.writerow([level, "accuracy", *values])
      w.writerow([level, "margin", *[1.0] * 48])
  report.aggregate(runs, tmp_path / "report")
  with open(tmp_path / "report" / "levels.csv") as f:
    rows = {r["band"]: r for r in csv.DictReader(f)}
  assert set(rows) == {"training", "larger"}                    # no smaller sizes in Small2Large
  assert rows["larger"]["best_level"] == "32 px"
  assert float(rows["larger"]["acc_64px"]) == pytest.approx(10.0)
  assert float(rows["larger"]["acc_average"]) == pytest.approx(50.0)
  assert float(rows["larger"]["average_minus_best"]) == pytest.approx(-30.0)
  assert float(rows["training"]["average_minus_best"]) == pytest.approx(10.0)
  assert "## The pyramid ensemble's levels" in (tmp_path / "report" / "report.md").read_text()


def test_a_run_outside_the_papers_runs_is_placed_by_its_validation_accuracy(tmp_path):
  """A run beyond all of the paper's test accuracies of its cell gets a line; its best validation
  accuracy is placed among the paper's runs' (paper_runs.csv), and on All2All, where validation
  and test cover the same sizes, its test-minus-validation gap is set against theirs."""
  runs = tmp_path / "runs"
  _fake_run(runs / "d", "disco", "emoji", 4, 2, 0.96, 1.0)         # paper: highest test 95.25
  res = json.loads((runs / "d" / "results.json").read_text())
  res["best_val_accuracy"] = 0.948                                  # theirs 92.13 to 95.43
  (runs / "d" / "results.json").write_text(json.dumps(res))
  _fake_run(runs / "s", "standard", "emoji", 2, 1, 0.25, 1.0)       # lowest 30.38; val 0.25 too
  _fake_run(runs / "t", "standard", "emoji", 2, 2, 0.40, 1.0)       # inside: no line
  report.aggregate(runs, tmp_path / "report")
  lines = [l for l in (tmp_path / "report" / "report.md").read_text().splitlines()
           if "of the paper's runs of the cell (its" in l]
  assert lines == [
      "- disco, emoji All2All, seed 2: 96.0%, above all 50 of the paper's runs of the cell (its "
      "highest 95.25%). Its best validation accuracy, 94.80%, lies among theirs (92.13 to "
      "95.43%, mean 94.56); test minus validation +1.20 points, the paper's runs' -0.23 ± 0.40 "
      "(All2All validates and tests on the same sizes).",
      "- standard, emoji Mid2Rest, seed 1: 25.0%, below all 50 of the paper's runs of the cell "
      "(its lowest 30.38%). Its best validation accuracy (on the training sizes), 25.00%, lies "
      "below all of theirs (lowest 99.65%)."]
