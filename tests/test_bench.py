"""The model benchmark's CLI and its row (timings are not asserted, only that they were taken)."""
import math

from stir_jax import bench


def test_time_model_row_counts_flops():
  row = bench.time_model("standard", "fast", batch=2, repeats=1)
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
