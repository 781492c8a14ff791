"""examples/nnx_scale_layers.py, the NNX example, runs as a user would run it (briefly)."""
import importlib.util
import math
import sys

import pytest

from tests.conftest import REPO


def _load_example():
  spec = importlib.util.spec_from_file_location("nnx_scale_layers",
                                                REPO / "examples" / "nnx_scale_layers.py")
  module = importlib.util.module_from_spec(spec)
  sys.modules[spec.name] = module
  spec.loader.exec_module(module)
  return module


def test_example_trains_and_reports(capsys):
  example = _load_example()
  results = example.main(["--steps", "2", "--train-size", "16", "--batch", "8", "--test-size",
                          "24", "--canvas", "16"])
  assert math.isfinite(results["loss_first"]) and math.isfinite(results["loss_last"])
  assert results["loss_first"] > 0 and results["seconds"] > 0
  bands = example.size_bands(16)
  assert list(results["accuracy"]) == [f"{b} {lo}-{hi}" for b, (lo, hi) in bands.items()]
  assert all(0.0 <= a <= 1.0 for a in results["accuracy"].values())
  out = capsys.readouterr().out
  assert "2 steps" in out and "test accuracy by object size: small 4-5" in out


@pytest.mark.parametrize("argv", [["--steps", "0"], ["--lr", "-1"], ["--canvas", "8"]])
def test_example_rejects_bad_arguments(argv, capsys):
  with pytest.raises(SystemExit) as exit_info:
    _load_example().main(argv)
  assert exit_info.value.code == 2
  assert ": error: need --" in capsys.readouterr().err.strip().splitlines()[-1]
