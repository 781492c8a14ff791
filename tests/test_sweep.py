"""The sweep (python -m stir_jax.sweep) on a tiny grid: plan, estimate, skip, resume, report."""
import json
import shutil

import pytest

from stir_jax import sweep
from stir_jax.train import engine
from stir_jax.data import splits as inputs
from stir_jax import rundir
from stir_jax.data import emoji, stir_file

REPO = __import__("pathlib").Path(__file__).resolve().parents[1]
TINY = str(REPO / "configs" / "tiny.py")


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
  path = tmp_path_factory.mktemp("data") / "emoji4.npz"
  stir_file.save_stir(path, emoji.generate_emoji(emoji.EMOJI_NAMES[:4], progress=False))
  return path


def _main(capsys, *argv) -> tuple[int, str, str]:
  """Runs the CLI in-process: (exit status, stdout, stderr)."""
  code = 0
  try:
    sweep.main([str(a) for a in argv])
  except SystemExit as e:
    code = e.code
  out, err = capsys.readouterr()
  return code, out, err


def test_parsing_helpers():
  assert sweep.parse_int_list("1-3,5, 7", "seeds") == [1, 2, 3, 5, 7]
  assert sweep.parse_int_list("4", "seeds") == [4]
  for bad in ("1-", "3-1", "a", "-2", ","):
    with pytest.raises(sweep.SweepError):
      sweep.parse_int_list(bad, "seeds")
  assert sweep.ranges([1, 2, 3, 5, 7, 8]) == "1-3,5,7-8" and sweep.ranges([]) == "-"
  assert sweep.parse_lrs("1e-3,0.01") == [1e-3, 0.01]
  for bad in ("0", "x", "1e-3,1e-3"):
    with pytest.raises(sweep.SweepError):
      sweep.parse_lrs(bad)

  config = sweep.load_config(TINY)
  sweep.apply_overrides(config, ["num_epochs=3", "learning_rate=0.5", "impl=xla",
                                 "seed_batching=vmap"])
  assert (config.num_epochs, config.learning_rate, config.impl) == (3, 0.5, "xla")
  assert config.seed_batching == "vmap"
  for bad, message in [("nope=1", "no such field"), ("num_epochs=lots", "not a int"),
                       ("seed=3", "the grid sets it"), ("num_epochs", "takes a value")]:
    with pytest.raises(sweep.SweepError, match=message):
      sweep.apply_overrides(config, [bad])
  with pytest.raises(sweep.SweepError, match="not found"):
    sweep.load_config("configs/no_such.py")


@pytest.mark.parametrize("args, message", [
    (["--models", "standard", "--datasets", "x.npz", "--seeds", "1"], "--out"),
    (["--out", "OUT", "--models", "nope", "--datasets", "DATA", "--seeds", "1"], "unknown model"),
    (["--out", "OUT", "--models", "standard", "--datasets", "/nonexistent.npz", "--seeds", "1"],
     "/nonexistent.npz"),
    (["--out", "OUT", "--models", "standard", "--datasets", "DATA", "--seeds", "5-1"], "bad seeds"),
    (["--out", "OUT", "--models", "standard", "--datasets", "DATA", "--seeds", "1",
      "--scenarios", "5"], "scenarios are 1..4"),
    (["--out", "OUT", "--models", "standard", "--datasets", "DATA", "--seeds", "1",
      "--config.nope=1"], "no such field"),
    (["--out", "OUT", "--models", "standard", "--datasets", "DATA", "--seeds", "1",
      "--num-seeds-per-program", "0"], "at least 1"),
])
def test_errors_are_one_line(args, message, tiny_data, tmp_path, capsys):
  argv = [{"OUT": str(tmp_path / "out"), "DATA": str(tiny_data)}.get(a, a) for a in args]
  code, _, err = _main(capsys, *argv, "--config", TINY, "--dry-run")
  lines = [l for l in err.splitlines() if l.strip()]
  assert code == 2 and len(lines) == 1, err
  assert lines[0].startswith("error: ") and message in lines[0], err


def test_plan_names_one_directory_per_setting(tiny_data, tmp_path, capsys):
  out = tmp_path / "sweep"
  code, stdout, _ = _main(capsys, "--out", out, "--models", "standard,pixel_pool", "--datasets",
                          tiny_data, "--scenarios", "1,2", "--seeds", "1-3", "--lrs", "1e-3,1e-2",
                          "--config", TINY, "--dry-run", "--probe-steps", "0")
  assert code == 0
  assert "plan: 24 runs" in stdout and "0 done, 0 partial, 24 new" in stdout
  args = sweep.build_parser().parse_args(
      ["--out", str(out), "--models", "standard,pixel_pool", "--datasets", str(tiny_data),
       "--scenarios", "1,2", "--seeds", "1-3", "--lrs", "1e-3,1e-2"])
  runs = sweep.make_plan(args, sweep.load_config(TINY))
  dirs = {r.dir.relative_to(out).as_posix() for r in runs}
  assert len(dirs) == 24
  assert "pixel_pool/emoji4/s2/lr0.01/seed_3" in dirs
  assert "standard/emoji4/s1/lr0.001/seed_1" in dirs
  r = runs[0]
  assert (r.config.model, r.config.scenario, r.config.learning_rate, r.config.seed,
          r.config.num_seeds) == ("standard", 1, 1e-3, 1, 1)
  assert not out.exists()  # a dry run writes nothing


def test_sweep_on_a_tiny_grid(tiny_data, tmp_path, capsys):
  out = tmp_path / "sweep"
  grid = ["--out", out, "--models", "standard", "--datasets", tiny_data, "--scenarios", "2",
          "--seeds", "1-3", "--config", TINY, "--config.num_epochs=2"]

  # seed 2 was interrupted after its first epoch (a run of the config the sweep builds)
  base = sweep.load_config(TINY)
  sweep.apply_overrides(base, ["num_epochs=2"])
  group = sweep.Group("standard", str(tiny_data), 2, base.learning_rate)

  class Crash(Exception):
    pass

  def crash(epoch):
    raise Crash()

  with pytest.raises(Crash):
    engine.train_and_evaluate(group.config(base, 2), group.dir(out) / "seed_2", progress=False,
                                on_epoch_end=crash)

  code, stdout, _ = _main(capsys, *grid, "--dry-run", "--probe-steps", "0")
  assert code == 0, stdout
  assert "3 runs" in stdout and "0 done, 1 partial, 2 new" in stdout
  row = [l for l in stdout.splitlines() if l.startswith("standard")][0].split()
  assert row == ["standard", "emoji4", "2", "0.001", "1-3", "-", "2", "1,3"]

  # seeds 1 (new) and 2 (resumed after epoch 1) train together in one program, seed 3 alone;
  # then the report
  code, stdout, err = _main(capsys, *grid, "--num-seeds-per-program", "2")
  assert code == 0, err
  # the sweep's bar names each program's finished epochs
  assert "standard/emoji4/s2/lr0.001/seed_1-2, epoch 2/2 done" in err
  assert "seed_3, epoch 1/2 done" in err
  assert f"resuming from epoch 2, step 0 ({group.dir(out) / 'seed_2'})" in stdout
  results = {s: json.loads((group.dir(out) / f"seed_{s}" / "results.json").read_text())
             for s in (1, 2, 3)}
  assert [results[s]["seeds_in_program"] for s in (1, 2)] == [2, 2]
  assert results[3]["seeds_in_program"] == 1
  assert [results[s]["epochs_run"] for s in (1, 2, 3)] == [2, 2, 2]
  assert [r["epoch"] for r in rundir.read_metrics(group.dir(out) / "seed_2")] == [1, 2]
  assert all(r["config"]["num_epochs"] == 2 and r["scenario"] == 2 for r in results.values())
  summary = (out / "report" / "summary.csv").read_text().splitlines()
  assert len(summary) == 2 and summary[1].startswith("standard,emoji4,2,Mid2Rest,0.001,3,")
  assert (out / "report" / "report.md").exists()

  # everything finished: nothing is retrained
  stamps = [(group.dir(out) / f"seed_{s}" / "results.json").stat().st_mtime_ns for s in (1, 2, 3)]
  code, stdout, _ = _main(capsys, *grid)
  assert code == 0 and "3 done, 0 partial, 0 new" in stdout and "nothing to train" in stdout
  assert stamps == [(group.dir(out) / f"seed_{s}" / "results.json").stat().st_mtime_ns
                    for s in (1, 2, 3)]

  # --evaluate: eval.py --workdir for the finished runs not yet evaluated, once; a finished run
  # kept without its checkpoints (as a published results folder holds it) is named, not failed
  shutil.rmtree(group.dir(out) / "seed_3" / "checkpoints")
  code, _, err = _main(capsys, *grid, "--evaluate", "--no-report")
  assert code == 0, err
  assert f"not evaluated: {group.dir(out) / 'seed_3'} has no checkpoints/best or params.msgpack" in err
  assert not (group.dir(out) / "seed_3" / "consistency.json").exists()
  marks = [group.dir(out) / f"seed_{s}" / "consistency.json" for s in (1, 2)]
  assert all(m.exists() and (m.parent / "generalization.csv").exists() for m in marks)
  assert all((m.parent / "params.msgpack").exists() for m in marks)  # the run keeps its model
  stamps = [m.stat().st_mtime_ns for m in marks]
  code, _, err = _main(capsys, *grid, "--evaluate", "--no-report")
  assert code == 0, err
  assert stamps == [m.stat().st_mtime_ns for m in marks]

  # another config for the same directories is refused before anything runs
  code, _, err = _main(capsys, *grid[:-1], "--config.num_epochs=3", "--dry-run")
  assert code == 2 and "different config (fields: num_epochs)" in err


def test_workers_share_a_grid_by_skipping_runs_another_is_training(tiny_data, tmp_path, capsys):
  """Two sweeps on one grid without --shard: a run directory another process holds (here: this
  process's own claim, which flock treats as another open) is skipped, not failed, not touched; the
  rest train; a later rerun finishes it."""
  out = tmp_path / "sweep"
  grid = ["--out", out, "--models", "standard", "--datasets", tiny_data, "--scenarios", "2",
          "--seeds", "1-3", "--config", TINY, "--config.num_epochs=1", "--no-report"]
  base = sweep.load_config(TINY)
  sweep.apply_overrides(base, ["num_epochs=1"])
  seed_dir = lambda s: sweep.Group("standard", str(tiny_data), 2, base.learning_rate).dir(out) / f"seed_{s}"
  with rundir.claimed([seed_dir(2)]):
    code, stdout, err = _main(capsys, *grid, "--evaluate")
    assert code == 0, err
    assert "skipped: standard/emoji4/s2/lr0.001/seed_2: another process is training it" in stdout + err
    assert "1 run(s) skipped" in stdout
    assert [rundir.is_finished(seed_dir(s)) for s in (1, 2, 3)] == [True, False, True]
    assert not any(seed_dir(2).iterdir())  # nothing written beside the other worker
    assert (seed_dir(3) / "consistency.json").exists()
    # --evaluate leaves a finished run alone while another process holds it
    (seed_dir(3) / "consistency.json").unlink()
    with rundir.claimed([seed_dir(3)]):
      code, _, err = _main(capsys, *grid, "--evaluate")
    assert code == 0 and f"not evaluated here: another process holds {seed_dir(3)}" in err
    assert not (seed_dir(3) / "consistency.json").exists()
  code, stdout, err = _main(capsys, *grid, "--evaluate")
  assert code == 0, err
  assert "skipped" not in stdout + err
  assert all(rundir.is_finished(seed_dir(s)) for s in (1, 2, 3))
  assert all((seed_dir(s) / "consistency.json").exists() for s in (1, 2, 3))


def test_estimate_from_probe_timings(tiny_data, tmp_path, monkeypatch):
  args = sweep.build_parser().parse_args(
      ["--out", str(tmp_path), "--models", "standard", "--datasets", str(tiny_data),
       "--scenarios", "2", "--seeds", "1-3"])
  base = sweep.load_config(TINY)
  sweep.apply_overrides(base, ["num_epochs=2"])
  runs = sweep.make_plan(args, base)
  probed = []

  def fake_probe(config, data, seeds_per_program, steps):
    probed.append(seeds_per_program)
    return {"train_step": 0.1, "eval_batch": 0.2, "compile": 5.0}

  monkeypatch.setattr(sweep, "probe", fake_probe)
  # 4 icons x 16 train sizes = 64 examples: 8 train steps (batch 8), 2 validation batches and
  # 6 test batches (all 48 sizes) of 32: 5 s compile + 2 x 1.2 s epochs + 1.2 s test = 8.6 s
  assert sweep.estimate(runs, base, 1, 3)[0] == pytest.approx(3 * 8.6)
  assert sweep.estimate(runs, base, 2, 3)[0] == pytest.approx(2 * 8.6)  # programs {1, 2}, {3}
  runs[0].status = "done"
  runs[1].status, runs[1].epochs_done = "partial", 1
  assert sweep.estimate(runs, base, 1, 3)[0] == pytest.approx(7.4 + 8.6)
  assert sweep.estimate(runs, base, 2, 3)[0] == pytest.approx(8.6)  # one program of 2 epochs
  runs[1].stopped = True  # stopped early: only its test pass is left
  assert sweep.estimate(runs, base, 1, 3)[0] == pytest.approx(6.2 + 8.6)
  assert probed == [1, 2, 1, 2, 1]


def test_probe_times_the_steps(tiny_data, capsys):
  base = sweep.load_config(TINY)
  group = sweep.Group("standard", str(tiny_data), 2, 1e-3)
  data = inputs.load_dataset(group.config(base, 1))
  t = sweep.probe(group.config(base, 1), data, 1, steps=1)
  assert t["train_step"] > 0 and t["eval_batch"] > 0 and t["compile"] >= 0


def test_shards_split_the_grid_into_disjoint_parts(tiny_data, tmp_path, capsys):
  assert sweep.parse_shard(None, env={}) == (0, 1)
  assert sweep.parse_shard("2/3", env={}) == (2, 3)
  slurm = {"SLURM_ARRAY_TASK_ID": "5", "SLURM_ARRAY_TASK_MIN": "4", "SLURM_ARRAY_TASK_COUNT": "3"}
  assert sweep.parse_shard(None, env=slurm) == (1, 3)
  assert sweep.parse_shard("0/2", env=slurm) == (0, 2)  # the flag wins
  for bad in ("3/3", "-1/2", "1", "a/b", "0/0"):
    with pytest.raises(sweep.SweepError):
      sweep.parse_shard(bad, env={})

  base = sweep.load_config(TINY)
  args = sweep.build_parser().parse_args(
      ["--out", str(tmp_path), "--models", "standard,ensemble", "--datasets", str(tiny_data),
       "--scenarios", "1,2", "--seeds", "1-3"])
  runs = sweep.make_plan(args, base)
  parts = [sweep.shard_runs(runs, i, 3) for i in range(3)]
  dirs = [sorted(str(r.dir) for r in p) for p in parts]
  assert [len(d) for d in dirs] == [4, 4, 4]
  assert sorted(d for p in dirs for d in p) == sorted(str(r.dir) for r in runs)  # all, once
  code, out, _ = _main(capsys, "--out", tmp_path, "--models", "standard,ensemble", "--datasets",
                       tiny_data, "--scenarios", "1,2", "--seeds", "1-3", "--config", TINY,
                       "--shard", "1/3", "--dry-run", "--probe-steps", "0")
  assert code == 0 and "plan: 4 runs" in out and "part 1 of 3" in out
  code, _, err = _main(capsys, "--out", tmp_path, "--models", "standard", "--datasets",
                       tiny_data, "--seeds", "1", "--config", TINY, "--shard", "4/3", "--dry-run")
  assert code == 2 and err.count("\n") == 1 and "does not exist" in err
