"""Trained parameters in a small file: export a tiny run, delete its checkpoints, load and evaluate."""
import json
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest

from configs import tiny
from stir_jax import pretrained
from stir_jax.data import emoji, stir_file
from stir_jax.eval import evaluation
from stir_jax.rundir import RunError
from stir_jax.train import engine

REPO = __import__("pathlib").Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  """A finished tiny run (standard, 4 emoji icons, one epoch) evaluated from its checkpoint: the
  run's layout is the sweep's, ROOT/standard/emoji4/s2/lr0.001/seed_1."""
  base = tmp_path_factory.mktemp("pretrained")
  data = base / "emoji4.npz"
  stir_file.save_stir(data, emoji.generate_emoji(emoji.EMOJI_NAMES[:4], progress=False))
  config = tiny.get_config()
  config.dataset = str(data)
  root = base / "results"
  run = root / "standard" / "emoji4" / "s2" / "lr0.001" / "seed_1"
  engine.train_and_evaluate(config, run, progress=False)
  evaluation.evaluate(run)
  return root, run


def _images(n=3):
  return np.random.default_rng(0).uniform(size=(n, 64, 64, 1)).astype(np.float32)


def test_export_then_load_without_checkpoints(trained, tmp_path):
  root, run = trained
  ckpt_model, ckpt_vars = evaluation.restore_model(run, evaluation.load_run_config(run),
                                                   _data_of(run))
  x = _images()
  want = np.asarray(ckpt_model.apply(ckpt_vars, x))
  proc = subprocess.run([sys.executable, "-m", "stir_jax.pretrained", "export", str(root),
                         "--missing", str(tmp_path / "missing.md")], cwd=REPO,
                        capture_output=True, text=True)
  assert proc.returncode == 0, proc.stderr
  assert "[1/1] standard/emoji4/s2/lr0.001/seed_1" in proc.stdout
  assert "exported 1, already had a params file 0, parameters lost 0" in proc.stdout
  path = pretrained.params_path(run)
  assert 0 < path.stat().st_size < 500_000
  shutil.rmtree(run / "checkpoints")
  module, variables = pretrained.load_run(run)
  np.testing.assert_array_equal(np.asarray(module.apply(variables, x)), want)
  module, variables = pretrained.load("standard", scenario=2, seed=1, data="emoji4", root=root)
  np.testing.assert_array_equal(np.asarray(module.apply(variables, x)), want)
  _, info = pretrained.read(path)
  assert (info["num_channels"], info["num_classes"], info["model"]) == (1, 4, "standard")
  # a second export has nothing to do; with its params file the run is not lost
  proc = subprocess.run([sys.executable, "-m", "stir_jax.pretrained", "export", str(root)],
                        cwd=REPO, capture_output=True, text=True)
  assert proc.returncode == 0 and "exported 0, already had a params file 1" in proc.stdout


def _data_of(run):
  from stir_jax.data import splits
  return splits.load_dataset(evaluation.load_run_config(run))


def test_eval_of_a_params_only_run_reproduces_its_generalization_csv(trained, tmp_path):
  root, run = trained
  before = (run / "generalization.csv").read_text()
  copy = tmp_path / "run"
  shutil.copytree(run, copy)
  if not pretrained.params_path(copy).exists():
    pretrained.export(copy)
  shutil.rmtree(copy / "checkpoints", ignore_errors=True)
  (copy / "generalization.csv").unlink()
  evaluation.evaluate(copy)
  assert (copy / "generalization.csv").read_text() == before


def test_lost_parameters_are_listed_and_errors_are_one_line(tmp_path):
  run = tmp_path / "root" / "standard" / "emoji" / "s2" / "lr0.001" / "seed_1"
  run.mkdir(parents=True)
  (run / "config.json").write_text(json.dumps({"model": "standard", "dataset": "data/emoji.npz"}))
  (run / "results.json").write_text("{}")
  proc = subprocess.run([sys.executable, "-m", "stir_jax.pretrained", "export",
                         str(tmp_path / "root"), "--missing", str(tmp_path / "m.md")], cwd=REPO,
                        capture_output=True, text=True)
  assert proc.returncode == 0 and "parameters lost 1" in proc.stdout
  assert "| standard/emoji/s2/lr0.001/seed_1 |" in (tmp_path / "m.md").read_text()
  with pytest.raises(RunError, match="has no params.msgpack .the run's parameters are lost"):
    pretrained.load_run(run)
  with pytest.raises(RunError, match="no run of xu on emoji, scenario 2, seed 1"):
    pretrained.load("xu", root=tmp_path / "root")
  (run / "params.msgpack").write_bytes(b"\x00garbage")
  with pytest.raises(RunError, match="is not a stir_jax params file"):
    pretrained.load_run(run)
  proc = subprocess.run([sys.executable, "-m", "stir_jax.pretrained", "export",
                         str(tmp_path / "nowhere")], cwd=REPO, capture_output=True, text=True)
  assert proc.returncode == 2 and proc.stderr.strip().startswith("error: ")
  assert len(proc.stderr.strip().splitlines()) == 1
