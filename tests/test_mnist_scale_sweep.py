"""MNIST-scale grids in the sweep (python -m stir_jax.sweep) and their section of the report.

One tiny sweep (mnist_cnn_28, 1 epoch, two generated realisations of a few hundred square
"digits") is trained once per module and shared: layout, resume, the report's numbers, the
timing probe. The plan, the estimate, the errors and the mixed report need no training.
"""
import contextlib
import csv
import io
import json
import pathlib

import numpy as np
import pytest

from stir_jax import sweep
from stir_jax.data import mnist, mnist_scale
from stir_jax.eval import evaluation, report
from stir_jax.data import splits as inputs
from tests.data.test_mnist_scale import square_digits
from tests.test_mnist_scale_training import compile_cache  # pylint: disable=unused-import
from tests.test_report import _fake_run

REPO = pathlib.Path(__file__).resolve().parents[1]
CONFIG = str(REPO / "configs" / "mnist_scale.py")
SIZES = {"train": 64, "valid": 32, "test": 64}  # batch 32: 2 train steps, 1 valid and 1 test batch
SMALL = ["--config.num_epochs=1", "--config.batch_size=32", "--config.eval_batch_size=64"]


def _main(*argv) -> tuple[int, str, str]:
  """Runs the sweep's CLI in-process: (exit status, stdout, stderr)."""
  out, err = io.StringIO(), io.StringIO()
  code = 0
  with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
    try:
      sweep.main([str(a) for a in argv])
    except SystemExit as e:
      code = e.code
  return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def realisations(tmp_path_factory):
  """Two tiny MNIST-scale files, mnist_scale_0.npz and mnist_scale_1.npz (seeds 0 and 1)."""
  images, labels = square_digits(300, 0)
  source = mnist.DigitSource(images[:200], labels[:200], images[200:], labels[200:], "squares")
  folder = tmp_path_factory.mktemp("data")
  paths = []
  for seed in (0, 1):
    data = mnist_scale.generate_mnist_scale(source, seed, sizes=SIZES, progress=False)
    paths.append(mnist_scale.save_mnist_scale(folder / f"mnist_scale_{seed}.npz", data))
  return paths


def _grid(out, realisations):
  return ["--out", out, "--models", "mnist_cnn_28", "--datasets",
          ",".join(str(p) for p in realisations), "--seeds", "0-1", "--num-seeds-per-program", "2",
          "--config", CONFIG, *SMALL]


@pytest.fixture(scope="module")
def swept(realisations, compile_cache, tmp_path_factory):  # pylint: disable=redefined-outer-name
  """The tiny sweep, trained once: (out, stdout of the first call): seeds 0 and 1 of each
  realisation in one program. The two programs (and the probe below) compile the same steps: JAX's
  persistent compilation cache compiles them once."""
  out = tmp_path_factory.mktemp("sweep") / "mnist_scale"
  code, stdout, err = _main(*_grid(out, realisations))
  assert code == 0, err
  return out, stdout


def test_plan_has_no_scenarios(realisations, tmp_path):
  out = tmp_path / "plan"
  # no --config: every dataset is MNIST-scale, so the MNIST-scale protocol is the default
  code, stdout, err = _main("--out", out, "--models", "mnist_cnn_28,mnist_ses_scalar_28",
                            "--datasets", ",".join(map(str, realisations)), "--seeds", "0-1",
                            "--lrs", "0.01,0.001", "--scenarios", "2", "--dry-run",
                            "--probe-steps", "0")
  assert code == 0, err
  assert "plan: 16 runs" in stdout and "8 settings: 0 done, 0 partial, 16 new" in stdout
  assert "config: configs/mnist_scale.py" in stdout
  assert "--scenarios does not apply to MNIST-scale data" in stdout
  rows = [l.split() for l in stdout.splitlines() if l.startswith("mnist_")]
  assert rows[0] == ["mnist_cnn_28", "mnist_scale_0", "-", "0.01", "0-1", "-", "-", "0-1"]
  assert len(rows) == 8 and all(r[2] == "-" for r in rows)
  assert not out.exists()  # a dry run writes nothing

  args = sweep.build_parser().parse_args(
      ["--out", str(out), "--models", "mnist_cnn_28", "--datasets", str(realisations[1]),
       "--seeds", "3"])
  (run,) = sweep.make_plan(args, sweep.load_config(CONFIG))
  assert run.dir.relative_to(out).as_posix() == "mnist_cnn_28/mnist_scale_1/lr0.01/seed_3"
  base = sweep.load_config(CONFIG)
  assert run.group.scenario is None and run.config.scenario == base.scenario  # left as it was
  assert (run.config.model, run.config.dataset, run.config.seed) == (
      "mnist_cnn_28", str(realisations[1]), 3)


@pytest.mark.parametrize("models, dataset, message", [
    ("standard", "mnist", "model 'standard' (STIR) cannot train on {mnist} (MNIST-scale data)"),
    # a missing emoji file counts as STIR: the sweep would generate it
    ("mnist_cnn_28", "emoji", "model 'mnist_cnn_28' (MNIST-scale) cannot train on {emoji} (STIR "
     "data)"),
    ("mnist_cnn_29", "mnist", "unknown model 'mnist_cnn_29' (did you mean mnist_cnn_28"),
])
def test_mixing_kinds_is_a_one_line_error(models, dataset, message, realisations, tmp_path):
  paths = {"mnist": str(realisations[0]), "emoji": str(tmp_path / "emoji_small.npz")}
  code, _, err = _main("--out", tmp_path / "out", "--models", models, "--datasets",
                       paths[dataset], "--seeds", "0", "--config", CONFIG)
  lines = [l for l in err.splitlines() if l.strip()]
  assert code == 2 and len(lines) == 1, err
  assert lines[0].startswith("error: " + message.format(**paths)), err
  assert not (tmp_path / "out").exists()
  if models == "standard":
    assert "mnist_ses_scalar_28" in lines[0]  # names the models that fit
  if models == "mnist_cnn_29":
    assert "mnist_cnn_28" in lines[0]


def test_estimate_uses_the_file_splits(realisations, tmp_path, monkeypatch):
  args = sweep.build_parser().parse_args(
      ["--out", str(tmp_path), "--models", "mnist_cnn_28", "--datasets",
       ",".join(map(str, realisations)), "--seeds", "0-1"])
  base = sweep.load_config(CONFIG)
  sweep.apply_overrides(base, [s[len("--config."):] for s in SMALL])
  runs = sweep.make_plan(args, base)
  probed = []

  def fake_probe(config, data, seeds_per_program, steps):
    probed.append((config.dataset, seeds_per_program))
    return {"train_step": 0.1, "eval_batch": 0.2, "compile": 5.0}

  monkeypatch.setattr(sweep, "probe", fake_probe)
  # 64 train / 32 valid / 64 test digits: 2 steps of 32, 1 valid and 1 test batch of 64:
  # 5 s compile + 1 epoch of 0.4 s + 0.2 s test = 5.6 s a run (a program of 2 seeds: the same)
  seconds, lines = sweep.estimate(runs, base, 1, 3)
  assert seconds == pytest.approx(4 * 5.6)
  assert sweep.estimate(runs, base, 2, 3)[0] == pytest.approx(2 * 5.6)
  # one probe per model and program size serves every realisation (they share their shapes)
  assert probed == [(str(realisations[0]), 1), (str(realisations[0]), 2)]
  assert lines == ["  mnist_cnn_28 on MNIST-scale: 100.0 ms per train step, 200.0 ms per "
                   "evaluation batch, compile 5.0 s"]


def test_probe_runs_an_mnist_scale_model(realisations, swept):  # after the sweep: cached compiles
  base = sweep.load_config(CONFIG)
  sweep.apply_overrides(base, [s[len("--config."):] for s in SMALL])
  config = sweep.Group("mnist_cnn_28", str(realisations[0]), None, 0.01).config(base, 0)
  t = sweep.probe(config, inputs.load_dataset(config), 2, steps=1)  # the sweep's programs
  assert t["train_step"] > 0 and t["eval_batch"] > 0 and t["compile"] >= 0


def test_sweep_layout_and_resume(swept, realisations):
  out, stdout = swept
  assert "plan: 4 runs" in stdout and "0 done, 0 partial, 4 new" in stdout
  dirs = sorted(p.parent.relative_to(out).as_posix() for p in out.rglob("results.json"))
  assert dirs == [f"mnist_cnn_28/mnist_scale_{k}/lr0.01/seed_{s}" for k in (0, 1) for s in (0, 1)]
  for d in dirs:
    res = json.loads((out / d / "results.json").read_text())
    assert res["benchmark"] == "mnist_scale" and pathlib.Path(res["dataset"]).stem in d
    assert res["epochs_run"] == 1 and res["test_count"] == SIZES["test"]
    assert res["seeds_in_program"] == 2 and res["config"]["seed"] == int(d[-1])
    assert res["config"]["batch_size"] == 32 and res["config"]["learning_rate"] == 0.01
  assert (out / "report" / "mnist_scale.csv").exists()
  assert not (out / "report" / "summary.csv").exists()  # no STIR runs, no STIR tables

  stamps = [(out / d / "results.json").stat().st_mtime_ns for d in dirs]
  code, stdout, err = _main(*_grid(out, realisations))
  assert code == 0, err
  assert "4 done, 0 partial, 0 new" in stdout and "nothing to train" in stdout
  assert stamps == [(out / d / "results.json").stat().st_mtime_ns for d in dirs]
  row = [l.split() for l in stdout.splitlines() if l.startswith("mnist_cnn_28")][0]
  assert row == ["mnist_cnn_28", "mnist_scale_0", "-", "0.01", "0-1", "0-1", "-", "-"]
  # one part of two: every other run, all of them done
  code, stdout, err = _main(*_grid(out, realisations), "--shard", "1/2", "--dry-run")
  assert code == 0 and "plan: 2 runs" in stdout and "part 1 of 2" in stdout, err
  assert "estimate: nothing left to train" in stdout
  # the same grid with another config is refused before anything runs
  code, _, err = _main(*_grid(out, realisations)[:-1], "--config.eval_batch_size=32")
  assert code == 2 and "different config (fields: eval_batch_size)" in err


def test_report_numbers_come_from_the_runs(swept, tmp_path):
  out, _ = swept
  accs = [json.loads(p.read_text())["test_accuracy"] for p in sorted(out.rglob("results.json"))]
  errors = 100 * (1 - np.array(accs))
  with open(out / "report" / "mnist_scale.csv") as f:
    (row,) = list(csv.DictReader(f))
  assert (row["model"], float(row["lr"]), row["runs"], row["realisations"]) == (
      "mnist_cnn_28", 0.01, "4", "2")
  assert float(row["mean_test_error"]) == pytest.approx(errors.mean(), abs=0.006)
  assert float(row["std_test_error"]) == pytest.approx(errors.std(ddof=1), abs=0.006)
  md = (out / "report" / "report.md").read_text()
  assert md.startswith("# MNIST-scale results: 4 runs under")
  assert f"| mnist_cnn_28 | 0.01 | 4 | 2 | {errors.mean():.2f} ± {errors.std(ddof=1):.2f} |" in md
  assert "best validation epoch" in md and "2 realisations" in md
  assert "mnist_scale_accuracy.png" not in md  # no run has accuracy_vs_scale.csv yet

  # the bins: one run evaluated by eval.py's function, the other's csv written by hand
  runs = sorted(p.parent for p in out.rglob("results.json"))
  evaluated = evaluation.evaluate(runs[0])
  assert evaluated["test_accuracy"] == pytest.approx(accs[0], abs=1e-6)
  rows = evaluated["per_scale_bin"]
  made = [dict(r, accuracy=0.25 * (i % 4)) for i, r in enumerate(rows)]
  with open(runs[1] / "accuracy_vs_scale.csv", "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=list(made[0]))
    writer.writeheader()
    writer.writerows(made)
  summary = report.aggregate(out, tmp_path / "report")
  assert summary["runs"] == 4 and summary["summary"] == []
  with open(tmp_path / "report" / "mnist_scale_bins.csv") as f:
    bins = list(csv.DictReader(f))
  assert len(bins) == len(evaluation.SCALE_BIN_EDGES) - 1
  for b, r, m in zip(bins, rows, made):
    assert float(b["scale_min"]) == r["scale_min"] and b["runs"] == "2"  # 2 of the 4 runs
    assert float(b["mean_accuracy"]) == pytest.approx(50 * (r["accuracy"] + m["accuracy"]),
                                                      abs=0.006)
  assert (tmp_path / "report" / "mnist_scale_accuracy.png").stat().st_size > 10_000
  assert "![MNIST-scale accuracy against the scale factor](mnist_scale_accuracy.png)" in (
      tmp_path / "report" / "report.md").read_text()


def _fake_mnist_run(path, model, data, seed, lr, acc):
  path.mkdir(parents=True)
  (path / "results.json").write_text(json.dumps({
      "model": model, "dataset": f"data/{data}.npz", "scenario": None, "benchmark": "mnist_scale",
      "test_accuracy": acc, "best_val_accuracy": acc, "best_epoch": 3, "epochs_run": 4,
      "mean_epoch_seconds": 2.0, "config": {"seed": seed, "learning_rate": lr}}))


def test_report_of_mixed_runs(tmp_path):
  """STIR and MNIST-scale runs in one directory: the STIR part as for the STIR runs alone, then
  the MNIST-scale section; publish copies both kinds."""
  stir = tmp_path / "stir"
  _fake_run(stir / "standard" / "s1", "standard", "emoji", 2, 1, 0.40, 1.0)
  _fake_run(stir / "standard" / "s2", "standard", "emoji", 2, 2, 0.50, 3.0)
  report.aggregate(stir, tmp_path / "stir_report")
  mixed = tmp_path / "mixed"
  _fake_run(mixed / "standard" / "s1", "standard", "emoji", 2, 1, 0.40, 1.0)
  _fake_run(mixed / "standard" / "s2", "standard", "emoji", 2, 2, 0.50, 3.0)
  for k, acc in enumerate([0.98, 0.97, 0.975]):
    _fake_mnist_run(mixed / "mnist" / f"r{k}", "mnist_ses_scalar_28", f"mnist_scale_{k}", 0,
                    0.01, acc)
  _fake_mnist_run(mixed / "mnist" / "other_lr", "mnist_ses_scalar_28", "mnist_scale_0", 0, 0.001,
                  0.9)
  out = report.aggregate(mixed, tmp_path / "mixed_report")
  assert out["runs"] == 6 and len(out["summary"]) == 1
  assert [(r["lr"], r["runs"], r["realisations"], r["mean_test_error"], r["std_test_error"])
          for r in out["mnist_scale"]] == [(0.001, 1, 1, 10.0, 0.0), (0.01, 3, 3, 2.5, 0.5)]
  for name in ("results.csv", "summary.csv", "epoch_time.csv", "size_bands.csv"):
    assert ((tmp_path / "mixed_report" / name).read_text()
            == (tmp_path / "stir_report" / name).read_text().replace(str(stir), str(mixed)))
  stir_md = (tmp_path / "stir_report" / "report.md").read_text().replace(str(stir), str(mixed))
  md = (tmp_path / "mixed_report" / "report.md").read_text()
  assert md.startswith(stir_md)
  assert md[len(stir_md):].startswith("\n## MNIST-scale: test error (%)")
  assert "| mnist_ses_scalar_28 | 0.01 | 3 | 3 | 2.50 ± 0.50 |" in md
  with open(tmp_path / "mixed_report" / "mnist_scale_runs.csv") as f:
    assert len(list(csv.DictReader(f))) == 4

  assert report.publish(mixed, tmp_path / "published") == 6
  assert sorted(p.name for p in (tmp_path / "published" / "mnist" / "r1").iterdir()) == [
      "results.json"]
  assert (tmp_path / "published" / "standard" / "s1" / "generalization.csv").exists()
