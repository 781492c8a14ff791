"""Preemption: SIGTERM mid-epoch saves the position (epoch, step, partial metric sums), the rerun
resumes there and ends with the metrics and results of an uninterrupted run."""
import json
import os
import signal

import pytest

from configs import tiny
from stir_jax import rundir
from stir_jax.data import emoji, stir_file
from stir_jax.train import engine, preemption

TIMING = ("epoch_seconds", "mean_epoch_seconds")


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
  path = tmp_path_factory.mktemp("data") / "emoji4.npz"
  stir_file.save_stir(path, emoji.generate_emoji(emoji.EMOJI_NAMES[:4], progress=False))
  return path


@pytest.fixture(scope="module")
def uninterrupted(tiny_data, tmp_path_factory):
  """The reference: 2 epochs (8 steps each) without interruption."""
  workdir = tmp_path_factory.mktemp("full") / "run"
  engine.train_and_evaluate(_config(tiny_data), workdir, progress=False)
  return workdir


def _config(data_path, **overrides):
  config = tiny.get_config()
  config.dataset = str(data_path)
  config.update(dict(num_epochs=2, patience=10))
  config.update(overrides)
  return config


def _without_timing(obj):
  if isinstance(obj, dict):
    return {k: _without_timing(v) for k, v in obj.items() if k not in TIMING}
  if isinstance(obj, list):
    return [_without_timing(v) for v in obj]
  return obj


def assert_same_run(a, b) -> None:
  """metrics.jsonl and results.json equal except the timing fields."""
  assert (_without_timing(rundir.read_metrics(a)) == _without_timing(rundir.read_metrics(b)))
  ra, rb = (json.loads((d / "results.json").read_text()) for d in (a, b))
  assert _without_timing(ra) == _without_timing(rb)


def test_sigterm_mid_epoch_then_rerun_equals_uninterrupted(tiny_data, uninterrupted, tmp_path,
                                                           capsys):
  workdir = tmp_path / "run"

  def sigterm_at(epoch, step):
    if (epoch, step) == (2, 3):  # 3 of epoch 2's 8 steps done
      os.kill(os.getpid(), signal.SIGTERM)

  with pytest.raises(preemption.Preempted) as stopped:
    engine.train_and_evaluate(_config(tiny_data), workdir, progress=False, on_step=sigterm_at)
  assert (stopped.value.epoch, stopped.value.step) == (2, 3)
  assert str(stopped.value) == ("preempted at epoch 2, step 3; rerun the same command to "
                                "resume")
  assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler is gone again
  assert not (workdir / "results.json").exists()
  assert [r["epoch"] for r in rundir.read_metrics(workdir)] == [1]
  capsys.readouterr()
  engine.train_and_evaluate(_config(tiny_data), workdir, progress=False)
  assert "resuming from epoch 2, step 3" in capsys.readouterr().out
  assert_same_run(uninterrupted, workdir)


@pytest.mark.slow
def test_timed_checkpoints_inside_an_epoch(tiny_data, uninterrupted, tmp_path, capsys):
  """checkpoint_every_minutes: a save inside the epoch (here every step); a crash after it
  resumes at that step, not at the epoch start."""
  workdir = tmp_path / "run"

  class Crash(Exception):
    pass

  def crash_at(epoch, step):
    if (epoch, step) == (2, 5):
      raise Crash()

  config = _config(tiny_data, checkpoint_every_minutes=1e-9)
  with pytest.raises(Crash):
    engine.train_and_evaluate(config, workdir, progress=False, on_step=crash_at)
  capsys.readouterr()
  # another checkpoint interval is the same run
  engine.train_and_evaluate(_config(tiny_data), workdir, progress=False)
  assert "resuming from epoch 2, step 4" in capsys.readouterr().out  # saved before step 5
  assert_same_run(uninterrupted, workdir)


def _crash_after_epoch(n):
  class Crash(Exception):
    pass

  def hook(epoch):
    if epoch == n:
      raise Crash()
  return Crash, hook


def test_truncated_newest_checkpoint_resumes_from_the_previous(tiny_data, tmp_path, capfd):
  """Two latest checkpoints are kept; the newest damaged -> one warning line, the previous one
  restored, the same end as an uninterrupted run, no traceback."""
  config = _config(tiny_data, num_epochs=3)
  full = tmp_path / "full"
  engine.train_and_evaluate(config, full, progress=False)
  workdir = tmp_path / "run"
  crash, hook = _crash_after_epoch(2)
  with pytest.raises(crash):
    engine.train_and_evaluate(config, workdir, progress=False, on_epoch_end=hook)
  latest = workdir / "checkpoints" / "latest"
  assert sorted(int(p.name) for p in latest.iterdir() if p.name.isdigit()) == [8, 16]
  for f in (latest / "16").rglob("*"):
    if f.is_file() and f.stat().st_size > 0:
      f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
  capfd.readouterr()
  engine.train_and_evaluate(config, workdir, progress=False)
  out, err = capfd.readouterr()
  warnings = [l for l in err.splitlines() if l.startswith("warning:")]
  assert len(warnings) == 1 and "16 does not restore" in warnings[0], err
  assert "Traceback" not in err and "Traceback" not in out
  assert "resuming from epoch 2, step 0" in out
  assert (latest / "broken-16").is_dir()
  assert_same_run(full, workdir)


@pytest.mark.slow
def test_half_written_checkpoint_and_none_restoring(tiny_data, tmp_path, capfd):
  """A step directory left half written (no commit metadata, files missing) is skipped with one
  warning; when no checkpoint restores, "restart" says so and trains from scratch, "stop"
  refuses with one line."""
  config = _config(tiny_data, num_epochs=1)
  workdir = tmp_path / "run"
  crash, hook = _crash_after_epoch(1)
  with pytest.raises(crash):
    engine.train_and_evaluate(config, workdir, progress=False, on_epoch_end=hook)
  latest = workdir / "checkpoints" / "latest"
  half = latest / "99"
  half.mkdir()
  (half / "state").mkdir()
  (latest / "8" / "_CHECKPOINT_METADATA").unlink()
  for f in (latest / "8" / "state").rglob("*"):
    if f.is_file():
      f.unlink()
  capfd.readouterr()
  with pytest.raises(rundir.RunError, match="no checkpoint .* restores"):
    engine.train_and_evaluate(_config(tiny_data, num_epochs=1, on_broken_checkpoint="stop"),
                              workdir, progress=False)
  err = capfd.readouterr().err
  assert len([l for l in err.splitlines() if l.startswith("warning:")]) == 2, err
  assert "Traceback" not in err
  engine.train_and_evaluate(config, workdir, progress=False)
  err = capfd.readouterr().err
  assert "starting over from epoch 1" in err and "Traceback" not in err
  assert [r["epoch"] for r in rundir.read_metrics(workdir)] == [1]
  assert (workdir / "results.json").exists()
