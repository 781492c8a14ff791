"""`bench scaling`: devices share the work. Per model, the compiled train step's per-device FLOPs on
D fake CPU devices against one (XLA's cost analysis), its all-gathers and step times, each device
count in its own subprocess (`bench scaling-probe`); and train.py's epoch time on D devices against
one. Needs the extra ``train``.
"""
from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import tempfile

import jax
import optax

from stir_jax.bench import models as models_bench
from stir_jax.bench import timing

REPO = pathlib.Path(__file__).resolve().parents[2]


def scaling_probe(names, repeats: int, batch: int = 16) -> list[dict]:
  """In this process (its device count fixed at start): per model, the compiled train step's
  per-device GFLOP (XLA's cost analysis of the SPMD program), its step ms, and the number of
  all-gather operations in it."""
  rows = []
  for name in names:
    model = models_bench.build(name, "auto", 1, 36)
    compiled, state, sums, b = models_bench.compiled_step(model, optax.adam(1e-3), batch, 1, 36)
    text = compiled.as_text()
    rows.append({"model": name, "devices": len(jax.devices()),
                 "gflop_per_device": timing.flops(compiled) / 1e9,
                 "all_gathers": text.count("all-gather-start") + text.count(" all-gather("),
                 "step_ms": models_bench.timed_steps(compiled, state, sums, b, repeats)})
  return rows


def subprocess_env(devices: int) -> dict:
  """This environment with `devices` fake CPU devices and the repository on PYTHONPATH."""
  env = dict(os.environ)
  flags = [f for f in env.get("XLA_FLAGS", "").split()
           if not f.startswith("--xla_force_host_platform_device_count")]
  env["XLA_FLAGS"] = " ".join(flags + [f"--xla_force_host_platform_device_count={devices}"])
  env["JAX_PLATFORMS"] = "cpu"
  env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
  return env


def _probe_in_subprocess(names, devices: int, repeats: int) -> list[dict]:
  cmd = [sys.executable, "-m", "stir_jax.bench", "scaling-probe", "--models", ",".join(names),
         "--repeats", str(repeats)]
  proc = subprocess.run(cmd, env=subprocess_env(devices), capture_output=True, text=True,
                        cwd=REPO, check=False)
  if proc.returncode:
    raise RuntimeError(f"the {devices}-device probe failed: {proc.stderr.strip()[-2000:]}")
  return [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]


def train_epochs(model: str, dataset: str, epochs: int, env: dict) -> tuple[list[dict], dict]:
  """train.py of `model` on emoji Mid2Rest (configs/paper.py) for `epochs` epochs in a
  subprocess with `env`, into a temporary directory: (metrics.jsonl rows, results.json)."""
  with tempfile.TemporaryDirectory() as tmp:
    cmd = [sys.executable, str(REPO / "train.py"), f"--config={REPO / 'configs' / 'paper.py'}",
           f"--config.model={model}", f"--config.dataset={dataset}",
           f"--config.num_epochs={epochs}", f"--workdir={tmp}/run"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=REPO, check=False)
    if proc.returncode:
      raise RuntimeError(f"train.py failed: {proc.stderr.strip()[-2000:]}")
    run = pathlib.Path(tmp) / "run"
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return rows, json.loads((run / "results.json").read_text())


def epoch_seconds(model: str, devices: int, dataset: str, epochs: int = 2) -> float:
  """train.py's last epoch time (epoch 2: compilation excluded) of `model` on emoji Mid2Rest with
  `devices` fake CPU devices."""
  rows, _ = train_epochs(model, dataset, epochs, subprocess_env(devices))
  return float(rows[-1]["epoch_seconds"])


def bench_scaling(names, devices: int, repeats: int, epoch_models, dataset: str) -> dict:
  one = {r["model"]: r for r in _probe_in_subprocess(names, 1, repeats)}
  many = {r["model"]: r for r in _probe_in_subprocess(names, devices, repeats)}
  print(f"train step, batch 16, 1 vs {devices} CPU devices (fake devices share this machine's "
        f"{os.cpu_count()} cores)")
  print(f"{'model':<18}{'GFLOP 1 dev':>12}{'GFLOP/dev':>11}{'share x' + str(devices):>10}"
        f"{'all-gathers':>12}{'ms 1 dev':>10}{'ms ' + str(devices) + ' dev':>10}")
  rows = []
  for name in names:
    a, b = one[name], many[name]
    share = b["gflop_per_device"] / a["gflop_per_device"]
    rows.append({"model": name, "gflop_1": a["gflop_per_device"],
                 "gflop_per_device": b["gflop_per_device"], "share_times_devices": share * devices,
                 "all_gathers": b["all_gathers"], "step_ms_1": a["step_ms"],
                 "step_ms_many": b["step_ms"]})
    print(f"{name:<18}{a['gflop_per_device']:>12.2f}{b['gflop_per_device']:>11.3f}"
          f"{share * devices:>10.3f}{b['all_gathers']:>12}{a['step_ms']:>10.1f}"
          f"{b['step_ms']:>10.1f}", flush=True)
  epochs = []
  for name in epoch_models:
    t1, tn = epoch_seconds(name, 1, dataset), epoch_seconds(name, devices, dataset)
    epochs.append({"model": name, "epoch_s_1": t1, "epoch_s_many": tn})
    print(f"train.py epoch (emoji Mid2Rest, epoch 2) {name}: 1 device {t1:.1f} s, "
          f"{devices} devices {tn:.1f} s ({tn / t1:.2f}x)", flush=True)
  return {"steps": rows, "epochs": epochs}
