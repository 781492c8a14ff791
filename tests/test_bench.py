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


def test_malloc_runs_train_py_under_each_allocator(monkeypatch, tmp_path, capsys):
  """`bench malloc` trains each model twice: the first run opted out of tcmalloc with nothing
  preloaded, the second left to train.py's own choice; epoch 1 (compilation) is not counted."""
  calls = []

  def fake_train(model, dataset, epochs, env):
    calls.append((model, epochs, env))
    opted_out = env.get("STIR_JAX_TCMALLOC") == "0"
    secs = [100.0, 9.0, 11.0] if opted_out else [100.0, 5.0, 5.0]
    return ([{"epoch_seconds": s} for s in secs],
            {"host": {"allocator": "system" if opted_out else "tcmalloc"}})

  monkeypatch.setattr(bench, "_train_epochs", fake_train)
  monkeypatch.setenv("LD_PRELOAD", "libtcmalloc_minimal.so.4")  # the bench itself under tcmalloc
  (row,) = bench.bench_malloc(["pixel_pool"], str(tmp_path / "d.npz"), epochs=3)
  (_, e1, system), (_, e2, default) = calls
  assert e1 == e2 == 3
  assert system["STIR_JAX_TCMALLOC"] == "0" and "LD_PRELOAD" not in system
  assert "STIR_JAX_TCMALLOC" not in default and "LD_PRELOAD" not in default
  assert "_STIR_JAX_TCMALLOC_TRIED" not in system and "_STIR_JAX_TCMALLOC_TRIED" not in default
  assert row["system_s"] == 10.0 and row["tcmalloc_s"] == 5.0 and row["speedup"] == 2.0
  assert row["system_ran_on"] == "system" and row["tcmalloc_ran_on"] == "tcmalloc"
  assert "pixel_pool         system 10.0 s, tcmalloc 5.0 s: 2.00x" in capsys.readouterr().out


def test_malloc_bad_arguments_are_one_line_errors(tmp_path, capsys):
  data = tmp_path / "d.npz"
  data.write_bytes(b"")
  for args, message in ((["--epoch-models", "nope", "--dataset", str(data)], "unknown model"),
                        (["--epoch-models", "standard", "--dataset", str(tmp_path / "x")],
                         "no STIR file"),
                        (["--epochs", "1"], "--epochs must be 2 or more")):
    assert bench.main(["malloc", *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err
