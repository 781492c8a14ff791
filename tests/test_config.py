"""The experiment object: every field's default in one table, every setting checked before a run
directory is touched, one line per bad setting."""
import json
import subprocess
import sys

import pytest

from configs import default, paper, tiny
from stir_jax import experiment, rundir
from stir_jax.data import emoji, stir_file

REPO = __import__("pathlib").Path(__file__).resolve().parents[1]


def test_defaults_are_the_papers_protocol_and_configs_start_from_them():
  exp = experiment.from_config(paper.get_config())
  assert (exp.model.name, exp.optimizer.learning_rate, exp.protocol.batch_size,
          exp.protocol.num_epochs, exp.protocol.patience) == ("pixel_pool", 1e-3, 16, 200, 10)
  assert set(default.get_config()) == set(experiment.FIELDS) == set(tiny.get_config())
  assert experiment.from_config(default.get_config()).model.name == "hermite"


@pytest.mark.parametrize("field, value, message", [
    ("batch_size", 0, "config.batch_size must be at least 1, got 0"),
    ("num_epochs", -1, "config.num_epochs must be at least 1, got -1"),
    ("learning_rate", -0.1, "config.learning_rate must be positive"),
    ("scenario", 7, "config.scenario must be 1, 2, 3 or 4"),
    ("patience", -1, "config.patience must be at least 0"),
    ("input_std", 0.0, "config.input_std must be positive"),
    ("lr_decay_epochs", (20, 10), "increasing positive epochs"),
    ("dtype", "int8", "config.dtype = 'int8' is not valid"),
    ("precision", "lowest", "config.precision"),
    ("interpolation", "cubic", "config.interpolation"),
    ("impl", "fast", "config.impl"),
    ("train_order", "sorted", "config.train_order"),
    ("parallelism", "pjit", "config.parallelism"),
    ("num_seeds", 0, "config.num_seeds must be at least 1"),
    ("on_broken_checkpoint", "ignore", "config.on_broken_checkpoint"),
    ("model", "pixl_pool", "pixel_pool"),
])
def test_invalid_settings_are_one_line_errors(field, value, message):
  config = experiment.default_config()
  config[field] = value
  with pytest.raises(experiment.ConfigError) as e:
    experiment.from_config(config)
  assert message in str(e.value) and "\n" not in str(e.value)


def test_unknown_field_suggests_the_closest():
  with pytest.raises(experiment.ConfigError,
                     match="config field 'num_epoch' does not exist; did you mean 'num_epochs'"):
    experiment.from_config({**experiment.DEFAULTS, "num_epoch": 3})


def test_old_run_configs_without_newer_fields_are_the_same_run():
  new = json.loads(experiment.default_config().to_json())
  old = {k: v for k, v in new.items()
         if k not in ("dtype", "precision", "train_order", "seed_batching",
                      "checkpoint_every_minutes", "on_broken_checkpoint", "input_mean")}
  assert rundir.config_differences(old, new) == []
  assert rundir.config_differences(old, {**new, "dtype": "bfloat16"}) == ["dtype"]
  # how a run executes is not what it computes
  assert rundir.config_differences(new, {**new, "checkpoint_every_minutes": 5.0}) == []


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
  path = tmp_path_factory.mktemp("data") / "emoji4.npz"
  stir_file.save_stir(path, emoji.generate_emoji(emoji.EMOJI_NAMES[:4], progress=False))
  return path


def _train(*args):
  return subprocess.run([sys.executable, "train.py", "--config=configs/tiny.py", *args], cwd=REPO,
                        capture_output=True, text=True, timeout=600)


def test_cli_bad_settings_write_nothing_and_the_corrected_command_runs(tiny_data, tmp_path):
  workdir = tmp_path / "run"
  for bad, message in (("--config.batch_size=0", "batch_size"),
                       ("--config.num_epochs=-1", "num_epochs"),
                       ("--config.learning_rate=-0.001", "learning_rate"),
                       ("--config.scenario=7", "scenario"),
                       ("--config.num_epoch=2", "did you mean 'num_epochs'?")):
    proc = _train(f"--config.dataset={tiny_data}", f"--workdir={workdir}", bad)
    lines = [l for l in proc.stderr.splitlines() if l.strip()]
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ") and message in lines[0] and "\\n" not in lines[0]
    assert not workdir.exists()
  proc = _train(f"--config.dataset={tiny_data}", f"--workdir={workdir}")
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert "accuracy by object size" in proc.stdout and (workdir / "results.json").exists()


def test_help_lists_the_config_fields():
  proc = subprocess.run([sys.executable, "train.py", "--help"], cwd=REPO, capture_output=True,
                        text=True, timeout=120)
  assert proc.returncode == 0
  assert "--config:" in proc.stdout
  for field in experiment.FIELDS:
    assert f"--config.{field} " in proc.stdout
