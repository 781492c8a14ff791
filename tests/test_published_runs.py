"""The committed runs: their trained models load in one call and reproduce their committed files."""
import csv
import json
import pathlib
import shutil

import numpy as np
import pytest

from stir_jax import pretrained
from stir_jax.data import emoji, stir_file
from stir_jax.eval import evaluation

REPO = pathlib.Path(__file__).resolve().parents[1]
RESULTS = REPO / "results" / "emoji"
# the run the README's example loads: ensemble, Small2Large, seed 1
RUN = RESULTS / "ensemble" / "emoji" / "s1" / "lr0.001" / "seed_1"


@pytest.fixture(scope="module")
def emoji_file(tmp_path_factory):
  path = tmp_path_factory.mktemp("data") / "emoji.npz"
  stir_file.save_stir(path, emoji.generate_emoji(progress=False))
  return path


def _levels(path):
  """levels.csv as {(level, quantity): [the per-size cells as text]}."""
  with open(path, newline="") as f:
    return {(r["level"], r["quantity"]): [v for k, v in r.items() if k not in ("level", "quantity")]
            for r in csv.DictReader(f)}


def test_every_run_with_parameters_loads_in_one_call():
  runs = [p.parent for p in RESULTS.rglob(pretrained.PARAMS_FILE)]
  assert RUN in runs
  x = np.zeros((2, 64, 64, 1), np.float32)
  for run in runs:
    module, variables = pretrained.load_run(run)
    assert module.apply(variables, x).shape == (2, 36), run


def test_committed_run_reevaluates_to_its_committed_generalization_csv(emoji_file, tmp_path):
  module, variables = pretrained.load("ensemble", scenario=1, seed=1)
  copy = tmp_path / "run"
  shutil.copytree(RUN, copy)
  config = json.loads((copy / "config.json").read_text())
  assert config["dataset"] == "data/emoji.npz"
  config["dataset"] = str(emoji_file)  # the same file, generated here (the generator is seeded)
  (copy / "config.json").write_text(json.dumps(config))
  (copy / "generalization.csv").unlink()
  (copy / "levels.csv").unlink()
  evaluation.evaluate(copy)
  assert (copy / "generalization.csv").read_text() == (RUN / "generalization.csv").read_text()
  # levels.csv: accuracies exactly; the logit margins to 1e-5 (printed to 6 decimals, their last
  # digit moves with the CPU's float rounding: the run was made on AMD EPYC, an Intel Xeon VM
  # prints some of them 1e-6 lower)
  ours, committed = _levels(copy / "levels.csv"), _levels(RUN / "levels.csv")
  assert ours.keys() == committed.keys()
  for key, values in committed.items():
    if key[1] == "accuracy":
      assert ours[key] == values, key
    else:
      np.testing.assert_allclose(np.asarray(ours[key], float), np.asarray(values, float),
                                 rtol=0, atol=1e-5, err_msg=str(key))
  # the pyramid's levels: the average of their logits is the model's prediction, so its accuracy
  # per size is generalization.csv's; each level alone differs from it
  with open(copy / "generalization.csv", newline="") as f:
    general = next(csv.DictReader(f))
  with open(copy / "levels.csv", newline="") as f:
    levels = {(r["level"], r["quantity"]): r for r in csv.DictReader(f)}
  assert set(levels) == {(lv, q) for lv in ("64 px", "32 px", "16 px", "average")
                         for q in ("accuracy", "margin")}
  sizes = [c for c in general if c.startswith("s") and c[1:].isdigit()]
  assert [levels["average", "accuracy"][c] for c in sizes] == [general[c] for c in sizes]
  for lv in ("64 px", "32 px", "16 px"):
    assert [levels[lv, "accuracy"][c] for c in sizes] != [general[c] for c in sizes]
  # the loaded module is the one evaluation used: its test accuracy is results.json's
  data = stir_file.load_stir(emoji_file)
  per_object = evaluation.predict_test_split(module, variables, data, 64)
  test = evaluation.test_metrics(per_object, 1)
  committed = json.loads((RUN / "results.json").read_text())
  assert test["accuracy"] == pytest.approx(committed["test_accuracy"], abs=1e-6)


@pytest.mark.parametrize("side, names", [(64, ["64 px", "32 px", "16 px"]),
                                         (48, ["48 px", "24 px", "12 px"])])
def test_level_names_come_from_the_pyramids_shapes(side, names):
  module, variables = pretrained.load("ensemble", scenario=1, seed=1)
  imgs = np.zeros((48, 1, 1, side, side, 1), np.float32)   # the test split (sizes, n, m, H, W, C)
  assert evaluation._level_names(module, variables, imgs) == names
