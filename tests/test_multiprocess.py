"""Several processes for real: two JAX processes on 127.0.0.1 with 2 CPU devices each train the
tiny config exactly like one process with 4 devices and one with 1 device (train.py, end to end)."""
import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from stir_jax.data import emoji, stir_file

REPO = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
  path = tmp_path_factory.mktemp("data") / "emoji4.npz"
  stir_file.save_stir(path, emoji.generate_emoji(emoji.EMOJI_NAMES[:4], progress=False))
  return path


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _env(devices: int) -> dict:
  return dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
              JAX_PLATFORMS="cpu", PYTHONPATH=str(REPO))


def _train_cmd(data, workdir, epochs: int) -> list[str]:
  return [sys.executable, str(REPO / "train.py"), "--config=configs/tiny.py",
          f"--config.dataset={data}", f"--config.num_epochs={epochs}", f"--workdir={workdir}"]


def _launch(data, workdir, processes: int, devices: int, epochs: int,
            extra=()) -> list[subprocess.Popen]:
  """`processes` processes of train.py with `devices` CPU devices each (one process: no runtime)."""
  cmd = _train_cmd(data, workdir, epochs) + list(extra)
  if processes == 1:
    return [subprocess.Popen(cmd, env=_env(devices), cwd=REPO, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)]
  port = _free_port()
  return [subprocess.Popen(cmd + [f"--coordinator_address=127.0.0.1:{port}",
                                  f"--num_processes={processes}", f"--process_id={i}"],
                           env=_env(devices), cwd=REPO, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
          for i in range(processes)]


def _wait(procs, timeout: float = 600) -> list[str]:
  outs = []
  for p in procs:
    out, err = p.communicate(timeout=timeout)
    assert p.returncode == 0, err[-3000:]
    outs.append(out)
  return outs


def _run(data, workdir, processes: int, devices: int, epochs: int = 2, extra=()) -> dict:
  outs = _wait(_launch(data, workdir, processes, devices, epochs, extra))
  return {"out": outs, "results": json.loads((workdir / "results.json").read_text()),
          "metrics": [json.loads(l) for l in (workdir / "metrics.jsonl").read_text().splitlines()]}


def _assert_same(a: dict, b: dict) -> None:
  assert [r["epoch"] for r in a["metrics"]] == [r["epoch"] for r in b["metrics"]]
  for key in ("train_loss", "train_accuracy", "val_loss", "val_accuracy"):
    np.testing.assert_allclose([r[key] for r in b["metrics"]], [r[key] for r in a["metrics"]],
                               rtol=1e-5, err_msg=key)
  for key in ("test_accuracy", "test_loss", "best_val_accuracy"):
    assert b["results"][key] == pytest.approx(a["results"][key], rel=1e-5), key
  scales = sorted(a["results"]["per_scale"])
  np.testing.assert_allclose([b["results"]["per_scale"][s] for s in scales],
                             [a["results"]["per_scale"][s] for s in scales], rtol=1e-5)


def test_two_processes_train_like_one(tiny_data, tmp_path):
  one = _run(tiny_data, tmp_path / "one", processes=1, devices=1)
  four = _run(tiny_data, tmp_path / "four", processes=1, devices=4)
  two_by_two = _run(tiny_data, tmp_path / "two", processes=2, devices=2)
  assert (one["results"]["process_count"], one["results"]["num_devices"]) == (1, 1)
  assert (four["results"]["process_count"], four["results"]["num_devices"]) == (1, 4)
  assert (two_by_two["results"]["process_count"], two_by_two["results"]["num_devices"]) == (2, 4)
  _assert_same(one, four)
  _assert_same(one, two_by_two)
  # only process 0 reports; both trained (the run directory is shared and written once)
  assert "test accuracy" in two_by_two["out"][0] and "test accuracy" not in two_by_two["out"][1]
  assert two_by_two["metrics"][-1]["epoch"] == 2


@pytest.mark.slow
def test_two_processes_killed_together_resume_together(tiny_data, tmp_path):
  full = _run(tiny_data, tmp_path / "full", processes=1, devices=1, epochs=4)
  workdir = tmp_path / "killed"
  procs = _launch(tiny_data, workdir, processes=2, devices=2, epochs=4)
  deadline = time.time() + 600
  metrics = workdir / "metrics.jsonl"  # checkpoints are named by step: wait for epoch 2's row
  while not (metrics.exists() and len(metrics.read_text().splitlines()) >= 2):
    assert time.time() < deadline and all(p.poll() is None for p in procs), "no epoch 2"
    time.sleep(0.2)
  for p in procs:
    p.send_signal(signal.SIGKILL)
    p.wait()
  assert not (workdir / "results.json").exists()
  resumed = _run(tiny_data, workdir, processes=2, devices=2, epochs=4)
  assert any("resuming" in out for out in resumed["out"])
  _assert_same(full, resumed)


def _launch_logged(data, workdir, processes: int, epochs: int, extra=()) -> list:
  """2 processes x 2 devices of train.py (batch 4: 16 steps an epoch), output in files."""
  port = _free_port()
  procs = []
  for i in range(processes):
    cmd = _train_cmd(data, workdir, epochs) + ["--config.batch_size=4", *extra,
                                               f"--coordinator_address=127.0.0.1:{port}",
                                               f"--num_processes={processes}", f"--process_id={i}"]
    out, err = (open(f"{workdir}.{i}.{k}", "w") for k in ("out", "err"))
    procs.append(subprocess.Popen(cmd, env=_env(2), cwd=REPO, stdout=out, stderr=err, text=True))
  return procs


def _wait_for_step(workdir, epoch: int, deadline: float) -> None:
  """Until process 0's progress bar shows a step done in `epoch`."""
  import re  # pylint: disable=g-import-not-at-top
  pattern = re.compile(rf"epoch {epoch}/\d+:\s+\d+%\|[^|]*\| *([1-9]\d*)/")
  while not pattern.search(pathlib.Path(f"{workdir}.0.err").read_text()):
    assert time.time() < deadline, "the run did not reach a step of epoch 2"
    time.sleep(0.05)


@pytest.mark.slow
def test_sigterm_to_one_process_stops_both_and_resumes(tiny_data, tmp_path):
  """SIGTERM to process 1 only: both processes save the same position and exit with status 75
  within 30 s; the rerun resumes inside epoch 2 and ends like an uninterrupted run."""
  full = _run(tiny_data, tmp_path / "full", processes=1, devices=1, epochs=3,
              extra=("--config.batch_size=4",))
  workdir = tmp_path / "run"
  procs = _launch_logged(tiny_data, workdir, 2, epochs=3)
  _wait_for_step(workdir, 2, time.time() + 600)
  procs[1].send_signal(signal.SIGTERM)
  start = time.time()
  for p in procs:
    p.wait(timeout=60)
  took = time.time() - start
  print(f"exited {took:.1f} s after the signal")
  errs = [pathlib.Path(f"{workdir}.{i}.err").read_text() for i in range(2)]
  assert [p.returncode for p in procs] == [75, 75], errs
  assert took < 30, took
  for err in errs:
    assert "Traceback" not in err
    assert re_line(err, r"preempted at epoch 2, step (\d+); rerun the same command to resume")
  step = int(re_line(errs[0], r"preempted at epoch 2, step (\d+)").group(1))
  assert step > 0
  resumed = _run(tiny_data, workdir, processes=2, devices=2, epochs=3,
                 extra=("--config.batch_size=4",))
  assert f"resuming from epoch 2, step {step}" in resumed["out"][0]
  # batch 4 in both: compare with one process trained the same way
  _assert_same(full, resumed)


def re_line(text: str, pattern: str):
  import re  # pylint: disable=g-import-not-at-top
  return re.search(pattern, text)


@pytest.mark.slow
def test_a_lost_process_ends_the_other_within_90_s(tiny_data, tmp_path):
  """kill -9 of process 1: process 0 exits within 90 s with one line naming process 1 (status
  76); the same command on both processes then resumes and finishes."""
  workdir = tmp_path / "run"
  procs = _launch_logged(tiny_data, workdir, 2, epochs=3)
  _wait_for_step(workdir, 2, time.time() + 600)
  procs[1].send_signal(signal.SIGKILL)
  start = time.time()
  procs[0].wait(timeout=120)
  took = time.time() - start
  print(f"exited {took:.1f} s after the signal")
  err = pathlib.Path(f"{workdir}.0.err").read_text()
  assert procs[0].returncode == 76, err[-2000:]
  assert took < 90, took
  lines = [l for l in err.splitlines() if "lost process" in l]
  assert len(lines) == 1 and "lost process 1 " in lines[0], err[-2000:]
  assert "Traceback" not in err and "Check failure" not in err
  resumed = _run(tiny_data, workdir, processes=2, devices=2, epochs=3,
                 extra=("--config.batch_size=4",))
  assert "resuming from epoch" in resumed["out"][0]
  assert [r["epoch"] for r in resumed["metrics"]] == [1, 2, 3]
