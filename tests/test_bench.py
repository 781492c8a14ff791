"""The model benchmark's CLI and its row (timings are not asserted, only that they were taken)."""
import math

import pytest

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

  monkeypatch.setattr(bench, "_train_epochs", fake_train)
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
