"""End to end: train a tiny run in a temporary directory, resume it, evaluate its checkpoint."""
import csv
import json
import os
import pathlib
import subprocess
import sys

import jax
import numpy as np
import pytest

from configs import tiny
from stir_jax import models, runtime
from stir_jax.eval import equivariance, evaluation
from stir_jax.train import RunError, engine
from stir_jax.data import splits as inputs
from stir_jax import rundir
from stir_jax.data import emoji, pipeline, stir_file

REPO = __import__("pathlib").Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
  path = tmp_path_factory.mktemp("data") / "emoji4.npz"
  stir_file.save_stir(path, emoji.generate_emoji(emoji.EMOJI_NAMES[:4], progress=False))
  return path


def _config(data_path, **overrides):
  config = tiny.get_config()
  config.dataset = str(data_path)
  config.update(overrides)
  return config


def test_train_then_evaluate(tiny_data, tmp_path):
  workdir = tmp_path / "run"
  results = engine.train_and_evaluate(_config(tiny_data), workdir, progress=False)

  saved = json.loads((workdir / "results.json").read_text())
  assert saved["test_accuracy"] == pytest.approx(results["test_accuracy"])
  assert 0.0 <= saved["test_accuracy"] <= 1.0
  # scenario 2 tests on 32 scales x 4 icons x 1 instance
  assert saved["test_count"] == 32 * 4
  assert sorted(saved["per_scale"]) == sorted(f"s{s}" for s in range(17, 65))
  assert saved["epochs_run"] == 1 and saved["model"] == "standard"
  # the machine the epoch times were measured on
  assert saved["host"]["cpus"] == len(os.sched_getaffinity(0))
  assert saved["host"]["device_kind"] == jax.devices()[0].device_kind
  assert isinstance(saved["host"]["cpu"], str) and saved["host"]["cpu"]
  boot = pathlib.Path("/proc/sys/kernel/random/boot_id")
  assert saved["host"]["boot_id"] == (boot.read_text().strip() if boot.exists() else None)
  assert saved["host"]["allocator"] == runtime.malloc_name()  # the malloc this process runs on
  rows = [json.loads(l) for l in (workdir / "metrics.jsonl").read_text().splitlines()]
  assert [r["epoch"] for r in rows] == [1]
  assert {"train_loss", "train_accuracy", "val_loss", "val_accuracy", "epoch_seconds"} <= set(rows[0])
  assert (workdir / "checkpoints" / "best").is_dir()
  assert json.loads((workdir / "config.json").read_text())["model"] == "standard"

  out = evaluation.evaluate(workdir)
  # evaluation restores the same best parameters, so it reproduces training's test numbers
  assert out["test_accuracy"] == pytest.approx(saved["test_accuracy"])
  with open(workdir / "generalization.csv") as f:
    (row,) = list(csv.DictReader(f))
  assert row["model"] == "standard" and row["data"] == "emoji4" and row["eval"] == "2"
  accs = np.array([float(row[f"s{s}"]) for s in range(17, 65)])
  assert np.all((accs >= 0) & (accs <= 1))
  np.testing.assert_allclose(accs, [saved["per_scale"][f"s{s}"] for s in range(17, 65)], atol=1e-6)
  assert (workdir / "accuracy_vs_scale.png").stat().st_size > 10_000

  consistency = json.loads((workdir / "consistency.json").read_text())
  assert 0.0 <= consistency["prediction_consistency"] <= 1.0
  assert consistency["correct_at_all_scales"] <= consistency["prediction_consistency"]
  with np.load(workdir / "equivariance.npz") as eq:
    assert eq["stage1"].shape == (4, 1, 6) and eq["stage2"].shape == (4, 1, 6)
    assert np.all(np.isfinite(eq["stage1"])) and np.all(eq["stage1"] >= 0)
  assert (workdir / "equivariance.png").exists()
  assert not (workdir / "indices.npz").exists()  # standard has no scale pools
  assert list((workdir / "tensorboard").iterdir())


def test_resume_after_crash_equals_uninterrupted_run(tiny_data, tmp_path):
  config = _config(tiny_data, num_epochs=3, patience=10)
  full = engine.train_and_evaluate(config, tmp_path / "full", progress=False)

  class Crash(Exception):
    pass

  def crash_after_2(epoch):
    if epoch == 2:
      raise Crash()

  with pytest.raises(Crash):
    engine.train_and_evaluate(config, tmp_path / "resumed", progress=False,
                                on_epoch_end=crash_after_2)
  assert not (tmp_path / "resumed" / "results.json").exists()
  resumed = engine.train_and_evaluate(config, tmp_path / "resumed", progress=False)
  for key in ("test_accuracy", "test_loss", "best_val_accuracy", "best_epoch", "per_scale"):
    assert resumed[key] == full[key], key
  assert resumed["epochs_run"] == 3
  # a finished run is not retrained
  again = engine.train_and_evaluate(config, tmp_path / "resumed", progress=False)
  assert again == json.loads((tmp_path / "resumed" / "results.json").read_text())


def test_refuses_foreign_workdir_and_other_config(tiny_data, tmp_path):
  foreign = tmp_path / "foreign"
  foreign.mkdir()
  (foreign / "notes.txt").write_text("keep me")
  with pytest.raises(RunError, match="not empty"):
    engine.train_and_evaluate(_config(tiny_data), foreign, progress=False)
  assert (foreign / "notes.txt").read_text() == "keep me"

  run = tmp_path / "run"
  run.mkdir()
  (run / "config.json").write_text(json.dumps(json.loads(_config(tiny_data).to_json())))
  (run / "metrics.jsonl").write_text(json.dumps({"epoch": 1, "val_accuracy": 0.5}) + "\n")
  with pytest.raises(RunError, match="different config"):
    engine.train_and_evaluate(_config(tiny_data, learning_rate=0.5), run, progress=False)
  # a directory whose run never trained a step (a failed start) is taken over by another config
  assert not rundir.started(tmp_path / "fresh")
  (tmp_path / "fresh").mkdir()
  (tmp_path / "fresh" / "config.json").write_text(run.joinpath("config.json").read_text())
  assert rundir.check_workdir(_config(tiny_data, learning_rate=0.5), tmp_path / "fresh") is False


def test_a_claimed_run_directory_refuses_a_second_claim(tmp_path):
  """rundir.claimed: flock on the directory (two opens conflict, even in one process); a directory
  the claim created and left empty goes again, anything else stays."""
  run = tmp_path / "grid" / "seed_1"
  with rundir.claimed([run]):
    assert run.is_dir()
    with pytest.raises(rundir.RunBusy, match="being trained by another process"):
      with rundir.claimed([tmp_path / "other", run]):
        pass
    assert not (tmp_path / "other").exists()  # created by the failed claim, then removed
  assert not run.exists()  # nothing was written in it
  with rundir.claimed([run]):
    (run / "config.json").write_text("{}")
  assert (run / "config.json").exists()
  with rundir.claimed([run]):  # free again once the block ended
    pass
  assert (run / "config.json").exists()


def test_a_second_process_on_a_busy_workdir_is_refused(tiny_data, tmp_path):
  """train.py twice on one workdir: the second stops with one line and writes nothing; once the
  first is killed (SIGKILL: no cleanup ran), the directory is free."""
  import signal
  import time
  workdir = tmp_path / "run"
  args = ["train.py", "--config=configs/tiny.py", f"--config.dataset={tiny_data}",
          "--config.num_epochs=1000", "--config.patience=0", f"--workdir={workdir}"]
  first = subprocess.Popen([sys.executable, *args], cwd=REPO, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
  try:
    metrics_file = workdir / "metrics.jsonl"
    deadline = time.time() + 300
    while time.time() < deadline and not (metrics_file.exists() and metrics_file.read_text()):
      time.sleep(0.05)
    assert first.poll() is None, "the first run ended before the second started"
    second = _cli(*args)
    assert first.poll() is None, "the first run ended while the second ran: nothing was tested"
    assert second.returncode == 2, second.stderr
    lines = [l for l in second.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and "is being trained by another process" in lines[0], second.stderr
    assert "resuming" not in second.stdout
  finally:
    first.send_signal(signal.SIGKILL)
    first.wait()
  with rundir.claimed([workdir]):
    assert (workdir / "config.json").exists()


def _cli(*args, cwd=REPO):
  return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True,
                        timeout=300)


@pytest.mark.parametrize("args, message", [
    (["train.py", "--config.no_such_field=1", "--workdir=/tmp/x"], "no_such_field"),
    (["train.py", "--config=configs/no_such_config.py"], "no_such_config"),
    (["train.py", "--config.num_epochs=lots"], "num_epochs"),
    (["train.py", "--config.dataset=/nonexistent/stir.npz", "--workdir=/tmp/stir_jax_none"],
     "/nonexistent/stir.npz"),
    (["eval.py", "--workdir=/nonexistent/run"], "/nonexistent/run"),
    (["eval.py"], "--workdir"),
])
def test_cli_errors_are_one_line(args, message):
  proc = _cli(*args)
  assert proc.returncode == 2, proc.stderr
  lines = [l for l in proc.stderr.splitlines() if l.strip()]
  assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], proc.stderr
  assert "Traceback" not in proc.stderr


def test_early_stopping_on_a_scripted_accuracy_sequence():
  accs = [0.1, 0.3, 0.3, 0.2, 0.5, 0.4, 0.45, 0.5, 0.6]
  meta = {"epoch": 0, "best_val_accuracy": -1.0, "best_epoch": 0, "bad_epochs": 0}
  ran = []
  for epoch, acc in enumerate(accs, start=1):
    if engine.should_stop(meta, patience=3):
      break
    meta, _ = engine.early_stopping_update(meta, epoch, acc)
    ran.append(epoch)
  # best 0.5 at epoch 5; epochs 6, 7, 8 bring nothing strictly better (0.5 ties do not count)
  assert ran == [1, 2, 3, 4, 5, 6, 7, 8]
  assert meta["best_epoch"] == 5 and meta["best_val_accuracy"] == 0.5


def test_non_finite_loss_stops_with_a_clear_error(tiny_data, tmp_path):
  import jax
  config = _config(tiny_data, num_epochs=3, learning_rate=1e38)  # the first update overflows
  with jax.debug_nans(False):
    with pytest.raises(RunError, match="non-finite training loss in epoch 1"):
      engine.train_and_evaluate(config, tmp_path / "run", progress=False)
  assert not (tmp_path / "run" / "results.json").exists()
  assert rundir.read_metrics(tmp_path / "run") == []  # the bad epoch is not logged


def test_eval_refuses_a_checkpoint_that_does_not_fit(tiny_data, tmp_path):
  run = tmp_path / "run"
  engine.train_and_evaluate(_config(tiny_data), run, progress=False)
  # the same run directory, but its config now names a data set with 3 classes instead of 4
  other = tmp_path / "three.npz"
  stir_file.save_stir(other, emoji.generate_emoji(emoji.EMOJI_NAMES[:3], progress=False))
  cfg = json.loads((run / "config.json").read_text())
  cfg["dataset"] = str(other)
  (run / "config.json").write_text(json.dumps(cfg))
  before = sorted(p.name for p in run.iterdir())
  proc = _cli("eval.py", f"--workdir={run}")
  assert proc.returncode == 2
  assert proc.stderr.startswith("error: the checkpoint") and "3 classes" in proc.stderr
  assert len(proc.stderr.strip().splitlines()) == 1
  assert sorted(p.name for p in run.iterdir()) == before  # nothing written


@pytest.mark.slow
def test_sigkill_then_rerun_equals_uninterrupted(tiny_data, tmp_path):
  import signal
  import time
  args = ["train.py", "--config=configs/tiny.py", f"--config.dataset={tiny_data}",
          "--config.num_epochs=4"]
  assert _cli(*args, f"--workdir={tmp_path / 'full'}").returncode == 0
  proc = subprocess.Popen([sys.executable, *args, f"--workdir={tmp_path / 'killed'}"], cwd=REPO,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  metrics_file = tmp_path / "killed" / "metrics.jsonl"
  deadline = time.time() + 300
  while time.time() < deadline and not (metrics_file.exists() and metrics_file.read_text().count("\n") >= 2):
    time.sleep(0.05)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  assert not (tmp_path / "killed" / "results.json").exists()
  assert _cli(*args, f"--workdir={tmp_path / 'killed'}").returncode == 0
  full = json.loads((tmp_path / "full" / "results.json").read_text())
  resumed = json.loads((tmp_path / "killed" / "results.json").read_text())
  for key in ("test_accuracy", "test_loss", "best_val_accuracy", "best_epoch", "per_scale",
              "epochs_run"):
    assert resumed[key] == full[key], key


def test_pooling_model_eval_writes_indices(tmp_path):
  data_path = tmp_path / "emoji2.npz"
  stir_file.save_stir(data_path, emoji.generate_emoji(emoji.EMOJI_NAMES[:2], progress=False))
  workdir = tmp_path / "pix"
  engine.train_and_evaluate(_config(data_path, model="pixel_pool", batch_size=16), workdir,
                              progress=False)
  evaluation.evaluate(workdir)
  with np.load(workdir / "indices.npz") as idx:
    assert idx["pool1"].shape == (48, 2, 1, 16) and idx["pool2"].shape == (48, 2, 1, 32)
    assert idx["pool1"].min() >= -1 and idx["pool1"].max() <= 28   # 29 scales in layer 1
    assert idx["pool2"].max() <= 25                               # 26 scales in layer 2
    assert (idx["pool1"] >= 0).any()                              # some channels responded
    np.testing.assert_array_equal(idx["scale"][:, 0, 0], np.arange(64, 16, -1))
  consistency = json.loads((workdir / "consistency.json").read_text())
  assert -1.0 <= consistency["pool1_spearman"] <= 1.0
  assert (workdir / "indices.png").stat().st_size > 10_000


@pytest.mark.parametrize("model", [
    "gauss_der",
    # 20-60 s each to compile; the default run covers the path with gauss_der
    pytest.param("dss", marks=pytest.mark.slow),
    pytest.param("ss", marks=pytest.mark.slow),
    pytest.param("sevf", marks=pytest.mark.slow)])
def test_other_families_train_and_evaluate(model, tiny_data, tmp_path):
  """The STIR models of issue 13 go through the engine and the evaluation like the paper's; those
  with a geometric scale axis (gauss_der, dss) also get the scale-covariant error."""
  workdir = tmp_path / model
  results = engine.train_and_evaluate(_config(tiny_data, model=model), workdir, progress=False)
  out = evaluation.evaluate(workdir)
  assert out["test_accuracy"] == pytest.approx(results["test_accuracy"])
  assert set(out["equivariance"]) == {"stage1", "stage2"}
  ratio = equivariance.scale_axis_ratio(models.get_model(model, 3, 4))
  with np.load(workdir / "equivariance.npz") as eq:
    assert eq["stage1"].shape == (4, 1, 6) and np.all(np.isfinite(eq["stage1"]))
    if ratio is None:
      assert "stage1_shifted" not in eq.files and "equivariance_shifted" not in out
    else:
      assert eq["stage1_shifted"].shape == (4, 1, 6)
      assert out["equivariance_shifted"]["stage1"] == pytest.approx(
          np.nanmean(eq["stage1_shifted"]))
      # shifting the scale axis by the size ratio removes much of the error a scale-channel
      # model's maps show when compared unshifted (measured after this one epoch, stage 1:
      # gauss_der 0.126 -> 0.028, dss 0.101 -> 0.043)
      assert out["equivariance_shifted"]["stage1"] < 0.6 * out["equivariance"]["stage1"]


def test_paper_train_order(tiny_data, tmp_path, monkeypatch):
  """train_order="paper" trains every epoch on the authors' fixed order (pipeline.paper_order) and
  "reshuffle" on a new order per epoch; both from the same initial parameters. An unknown order
  is a RunError before anything is written."""
  seen = []
  real = inputs.split_batches

  def spy(data, split, scenario, **kw):
    if split == "train":
      seen.append((kw.get("seed"), kw.get("order")))
    return real(data, split, scenario, **kw)

  monkeypatch.setattr(inputs, "split_batches", spy)
  paper = engine.train_and_evaluate(_config(tiny_data, train_order="paper", num_epochs=2),
                                    tmp_path / "paper", progress=False)
  assert len(seen) == 2 and all(seed is None for seed, _ in seen)
  n = 16 * 4  # 4 icons at Mid2Rest's 16 training sizes
  for _, order in seen:
    np.testing.assert_array_equal(order, pipeline.paper_order(n))
  seen.clear()
  shuffled = engine.train_and_evaluate(_config(tiny_data, num_epochs=2), tmp_path / "shuffled",
                                       progress=False)
  assert [order for _, order in seen] == [None, None] and seen[0][0] != seen[1][0]
  assert json.loads((tmp_path / "paper" / "config.json").read_text())["train_order"] == "paper"
  # same initial parameters, other batches: another first epoch
  first = lambda run: json.loads((tmp_path / run / "metrics.jsonl").read_text().splitlines()[0])
  assert first("paper")["train_loss"] != first("shuffled")["train_loss"]
  assert np.isfinite(paper["test_loss"]) and np.isfinite(shuffled["test_loss"])
  with pytest.raises(RunError, match="train_order"):
    engine.train_and_evaluate(_config(tiny_data, train_order="sorted"), tmp_path / "bad",
                              progress=False)
  assert not (tmp_path / "bad" / "results.json").exists()


def test_bfloat16_run_and_bad_dtype(tiny_data, tmp_path):
  results = engine.train_and_evaluate(_config(tiny_data, dtype="bfloat16"), tmp_path / "bf16",
                                      progress=False)
  assert np.isfinite(results["test_loss"]) and results["config"]["dtype"] == "bfloat16"
  with pytest.raises(RunError, match="dtype"):
    engine.train_and_evaluate(_config(tiny_data, dtype="int8"), tmp_path / "int8", progress=False)


def test_runs_from_before_the_dtype_fields_still_count(tiny_data, tmp_path):
  """A run directory written before config.dtype and config.precision existed is the same run."""
  run = tmp_path / "run"
  config = _config(tiny_data)
  engine.train_and_evaluate(config, run, progress=False)
  old = json.loads((run / "config.json").read_text())
  del old["dtype"], old["precision"]
  (run / "config.json").write_text(json.dumps(old))
  assert rundir.check_workdir(config, run)
  assert engine.train_and_evaluate(config, run, progress=False)["test_accuracy"] >= 0
  with pytest.raises(RunError, match="different config .fields: dtype"):
    rundir.check_workdir(_config(tiny_data, dtype="bfloat16"), run)
