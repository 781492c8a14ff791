"""The benchmarks' CLI, the model row and the device report (timings are not asserted, only that
they were taken; the grid estimate is checked against its formula)."""
import csv
import math
import time

import pytest

from stir_jax import bench
from stir_jax.bench import device, scaling, timing


def test_time_model_row_counts_flops():
  row = bench.time_model("standard", "auto", batch=2, repeats=1)
  assert row["params"] == 27108
  assert row["forward_ms"] > 0 and row["train_step_ms"] > 0
  # Two valid 7x7 convolutions (1->16 on 64x64, 16->32 on 58x58) at batch 2: forward 2 * MACs,
  # and the train step adds at least the weight gradients (the same again).
  forward = 2 * 2 * (58 * 58 * 49 * 16 + 52 * 52 * 49 * 16 * 32)
  assert 2 * forward <= row["train_step_gflop"] * 1e9 <= 4 * forward


def test_models_table(capsys):
  assert bench.main(["models", "--models", "standard", "--repeats", "1"]) == 0
  lines = capsys.readouterr().out.splitlines()
  assert "GFLOP/s" in lines[1]
  cells = lines[2].split()
  assert cells[0] == "standard" and cells[4] == "1.00" and cells[6] == "1.00"
  assert all(math.isfinite(float(c)) and float(c) > 0 for c in cells[1:])


def test_unknown_model_is_one_line_error(capsys):
  assert bench.main(["models", "--models", "nope"]) == 2
  err = capsys.readouterr().err
  assert err.count("\n") == 1 and "unknown model(s) nope" in err and "standard" in err


def test_malloc_runs_train_py_under_each_allocator(monkeypatch, tmp_path, capsys):
  """`bench malloc` trains each model under each malloc, alternating which goes first: opted out
  of tcmalloc with nothing preloaded, then left to train.py's own choice; epoch 1 (compilation)
  is not counted."""
  calls = []

  def fake_train(model, dataset, epochs, env):
    opted_out = env.get("STIR_JAX_TCMALLOC") == "0"
    calls.append((model, epochs, env, "system" if opted_out else "tcmalloc"))
    secs = [100.0, 9.0, 11.0] if opted_out else [100.0, 5.0, 4.0 + len(calls)]
    return ([{"epoch_seconds": s} for s in secs],
            {"host": {"allocator": "system" if opted_out else "tcmalloc"}})

  monkeypatch.setattr(scaling, "train_epochs", fake_train)
  monkeypatch.setenv("LD_PRELOAD", "libtcmalloc_minimal.so.4")  # the bench itself under tcmalloc
  (row,) = bench.bench_malloc(["pixel_pool"], str(tmp_path / "d.npz"), epochs=3, rounds=2)
  assert [c[3] for c in calls] == ["system", "tcmalloc", "tcmalloc", "system"]
  assert all(c[1] == 3 for c in calls)
  system, default = calls[0][2], calls[1][2]
  assert system["STIR_JAX_TCMALLOC"] == "0" and "LD_PRELOAD" not in system
  assert "STIR_JAX_TCMALLOC" not in default and "LD_PRELOAD" not in default
  assert "_STIR_JAX_TCMALLOC_TRIED" not in system and "_STIR_JAX_TCMALLOC_TRIED" not in default
  # tcmalloc runs: medians of (5, 6) and (5, 7) -> 5.5 and 6.0; system: 10 twice
  assert row["tcmalloc_runs"] == [5.5, 6.0] and row["system_runs"] == [10.0, 10.0]
  assert row["tcmalloc_s"] == 5.75 and row["system_s"] == 10.0
  assert row["speedup"] == pytest.approx(10.0 / 5.75)
  assert row["system_ran_on"] == "system" and row["tcmalloc_ran_on"] == "tcmalloc"
  assert ("pixel_pool         system 10.0 s (10.0, 10.0), tcmalloc 5.8 s (5.5, 6.0): 1.74x"
          in capsys.readouterr().out)


def test_malloc_bad_arguments_are_one_line_errors(tmp_path, capsys):
  data = tmp_path / "d.npz"
  data.write_bytes(b"")
  for args, message in ((["--epoch-models", "nope", "--dataset", str(data)], "unknown model"),
                        (["--epoch-models", "standard", "--dataset", str(tmp_path / "x")],
                         "no STIR file"),
                        (["--epochs", "1"], "--epochs must be 2 or more"),
                        (["--rounds", "0"], "--rounds must be 1 or more")):
    assert bench.main(["malloc", *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err


def test_bad_arguments_of_other_modes_are_one_line_errors(capsys):
  for args, message in ((["device", "--items", "nope"], "--items takes"),
                        (["device", "--budget-s", "0"], "--budget-s must be positive"),
                        (["pools", "--pools", "nope"], "--pools takes"),
                        (["pools", "--layers", "3"], "--layers takes"),
                        (["siconv", "--repeats", "0"], "--repeats must be 1 or more"),
                        (["nope"], "invalid choice")):
    with pytest.raises(SystemExit) as e:  # argparse's own errors exit; ours return
      raise SystemExit(bench.main(args))
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and message in err


def test_old_names_still_resolve():
  from stir_jax.bench import models as models_bench  # pylint: disable=g-import-not-at-top
  assert bench.compiled_step is models_bench.compiled_step
  assert bench._flops is timing.flops  # pylint: disable=protected-access
  with pytest.raises(AttributeError):
    bench.no_such_name  # pylint: disable=pointless-statement


def test_run_tasks_skips_what_the_budget_leaves_out():
  now = [0.0]
  budget = timing.Budget(10.0, clock=lambda: now[0])

  def task(i, cost):
    def run():
      now[0] += cost  # the task takes `cost` seconds of the fake clock
      return 0.5, 4.0
    return device.Task("models", f"m{i}", "highest", "step", 8, run)

  rows = device.run_tasks([task(0, 6.0), task(1, 6.0), task(2, 1.0)], budget, log=lambda s: None)
  assert [r.note for r in rows] == ["", "", "skipped: the 10 s budget was spent"]
  assert rows[0].ms_per_call == 4.0 and rows[0].compile_s == 0.5
  assert rows[0].examples_per_s == 8 / 4.0 * 1e3
  assert math.isnan(rows[2].ms_per_call)
  failing = device.Task("models", "bad", "highest", "step", 8, lambda: 1 / 0)
  (row,) = device.run_tasks([failing], timing.Budget(10.0), log=lambda s: None)
  assert row.note.startswith("failed: ZeroDivisionError")


def _rows(step_rate, speedup):
  """Synthetic rows: every grid model at `step_rate` examples/s, and both seed kinds at
  `speedup` with 8 seeds (and less with 32)."""
  rows = [device.Row("models", f"{m} train step", "highest", "step", 16,
                     examples_per_s=step_rate)
          for m in {e["model"] for e in device.paper_grid()}]
  for kind in device.SEED_MODELS:
    for n, rate in ((1, 100.0), (8, 100.0 * speedup), (32, 90.0 * speedup)):
      rows.append(device.Row("seeds", f"{kind} x{n} seeds (vmap)", "highest", "step", 16 * n,
                             examples_per_s=rate))
  return rows


def test_grid_estimate_follows_its_formula():
  grid = device.paper_grid()
  assert sum(int(e["runs"]) for e in grid) == 5500  # the paper's table
  est = device.grid_estimate(_rows(step_rate=50.0, speedup=3.0), epochs_per_run=10)
  assert est["missing"] == [] and est["runs"] == 5500
  assert est["speedups"] == {"pixel_pool": (8, 3.0), "standard": (8, 3.0)}
  sizes = {1: 16, 2: 16, 3: 16, 4: 48}
  examples = {"emoji": 36, "mnist": 500, "trafficsign": 400, "aerial": 225}  # classes x instances
  want = sum(int(e["runs"]) * 10 * sizes[int(e["eval"])] * examples[e["data"]] * (1 + 1 / 3)
             / (50.0 * 3.0) for e in grid)
  assert est["seconds"] == pytest.approx(want)
  # A model without a measured step is named, not counted.
  rows = [r for r in _rows(50.0, 3.0) if r.form != "xu train step"]
  est = device.grid_estimate(rows, epochs_per_run=10)
  assert est["missing"] == ["xu"] and est["runs"] == 5000


def test_device_report_quick(tmp_path, capsys):
  """One item on tiny shapes end to end: the CSV and Markdown report, every row timed."""
  assert bench.main(["device", "--quick", "--items", "conv3d", "--repeats", "1",
                     "--out", str(tmp_path)]) == 0
  with open(tmp_path / "device_report.csv") as f:
    rows = list(csv.DictReader(f))
  assert tuple(rows[0]) == device.COLUMNS
  # conv3d: direct and fft x highest and default x fwd and fwd+bwd
  assert len(rows) == 8 and {r["precision"] for r in rows} == {"highest", "default"}
  assert {r["pass"] for r in rows} == {"fwd", "fwd+bwd"} and all(not r["note"] for r in rows)
  assert all(float(r["ms_per_call"]) > 0 and float(r["compile_s"]) > 0 for r in rows)
  assert rows[0]["backend"] == "cpu"
  md = (tmp_path / "device_report.md").read_text()
  assert md.count("| conv3d |") == 8 and "No estimate" in md
  assert "wrote" in capsys.readouterr().out


@pytest.mark.slow
def test_device_report_quick_every_item(tmp_path):
  out = device.run(str(tmp_path), 600, quick=True, repeats=1)
  assert all(not r.note for r in out["rows"]), [r.note for r in out["rows"] if r.note]
  assert out["estimate"]["per_model"] and "standard" in out["estimate"]["per_model"]


def test_median_ms_fits_its_repeats_to_the_budget():
  calls = []

  def fn():
    calls.append(1)
    time.sleep(0.01)

  timing.median_ms(fn, 100, timing.Budget(0.05, clock=lambda: 0.0))  # 0.05 s left, 0.01 s a call
  assert 2 <= len(calls) <= 6  # the warm-up and at most five timed calls, not 100
  calls.clear()
  timing.median_ms(fn, 3, timing.Budget(-1.0, clock=lambda: 0.0))  # spent: still one timed call
  assert len(calls) == 2
  calls.clear()
  timing.median_ms(fn, 3)  # no budget: as asked
  assert len(calls) == 4
