"""Data parallelism on 8 fake CPU devices equals one device (run in a subprocess, since the
device count is fixed when JAX starts)."""
import json
import os
import subprocess
import sys

import pytest

REPO = __import__("pathlib").Path(__file__).resolve().parents[1]


def _run(model, impl):
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8",
             PYTHONPATH=str(REPO))
  proc = subprocess.run([sys.executable, str(REPO / "tests" / "parallel_check.py"), model, impl],
                        env=env, capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return json.loads(proc.stdout.strip().splitlines()[-1])


# XLA's convolution: the FFT form turns exactly-zero gradients (dead units) into ~1e-9 noise that
# depends on how the batch is split, and Adam's normalisation amplifies such noise to ~lr; with
# XLA's convolution the paths agree to float rounding, which is what this test checks.
@pytest.mark.parametrize("model, impl", [("standard", "xla")])
def test_eight_devices_match_one(model, impl):
  out = _run(model, impl)
  assert out["changed"] > 1e-4  # training did move the parameters
  assert out["jit8_max_rel"] <= 1e-5, out
  assert out["pmap8_max_rel"] <= 1e-5, out
  for name in ("one", "jit8", "pmap8"):
    assert out[f"{name}_eval_count"] == 45  # every example once, padding masked out
    assert out[f"{name}_train_count"] == 16 + 16 + 11  # sums kept on the devices over 3 steps
  assert out["jit8_eval_loss"] == pytest.approx(out["one_eval_loss"], rel=1e-5)
  assert out["pmap8_eval_loss"] == pytest.approx(out["one_eval_loss"], rel=1e-5)
  # each device works on its own shard: ~1/8 of the work, nothing gathered, gradients all-reduced
  assert out["flop_share"] * 8 <= 1.2, out
  assert out["all_gathers"] == 0 and out["all_reduces"] > 0, out
