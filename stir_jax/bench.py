"""Benchmarks: `python -m stir_jax.bench models|siconv|seeds|scaling|malloc [options]`.

  models   per-model train step (below)
  siconv   one SiConv layer's direct and FFT paths
  seeds    N seeds in one program against N sequential runs (the engine's seed axis)
  scaling  devices share the work: per-device FLOPs of the compiled step on D devices against one
           device (XLA's cost analysis), step times, all-gathers in the compiled step, and
           train.py epoch times on D fake CPU devices against one (subprocesses, --devices D)
  malloc   train.py epoch times under the system malloc against tcmalloc (--epoch-models)

Prints, per model: parameter count, forward ms and train-step ms (batch 16, 64x64 inputs, Adam),
the ratio of the train step to the standard model's, the train step's floating-point operations as
XLA's cost analysis of the compiled step counts them (GFLOP, and that count's ratio to the standard
model's), the rate achieved (GFLOP/s), and the JAX device. Timings are medians over repeats after a
warm-up (compilation excluded). `siconv` times one SiConv layer's two paths.

The FLOP ratio is a floor for the time ratio unless a model runs its operations faster than the
standard model runs its convolutions.
"""
from __future__ import annotations

if __name__ == "__main__":
  from stir_jax import allocator  # first: a re-execution repeats only these lines
  allocator.use_tcmalloc()

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from stir_jax import allocator, models
from stir_jax.train import placement as placement_lib, state as state_lib, steps as steps_lib

REPO = pathlib.Path(__file__).resolve().parents[1]


def _median_ms(fn, repeats: int) -> float:
  jax.block_until_ready(fn())
  times = []
  for _ in range(repeats):
    t = time.perf_counter()
    jax.block_until_ready(fn())
    times.append((time.perf_counter() - t) * 1e3)
  return statistics.median(times)


def compiled_step(model, tx, batch: int, channels: int, classes: int, devices=None,
                  seed: int = 0):
  """The engine's train step for one seed, compiled ahead of time on `devices` (all by default),
  with a placed state, zero sums and a random placed batch: (compiled, state, sums, batch)."""
  rng = np.random.default_rng(seed)
  place = placement_lib.Placement(1, "jit", devices=devices)
  place.check_global_batch(batch)
  host = jax.device_get(state_lib.create_train_state(model, tx, jax.random.PRNGKey(0), channels))
  state = place.put_state(placement_lib.stack([host]))
  b = place.put_train_batch(placement_lib.stack(
      [placement_lib.random_batch(rng, batch, channels, classes)]))
  sums = place.zero_sums(per_scale=False)
  step = place.train_step(steps_lib.train_step_fn(model, tx))
  return step.lower(state, sums, b).compile(), state, sums, b


def _timed_steps(compiled, state, sums, batch, repeats: int) -> float:
  holder = [state, sums]

  def one_step():
    holder[0], holder[1] = compiled(holder[0], holder[1], batch)
    return holder[1]

  return _median_ms(one_step, repeats)


def _model(name: str, impl: str, channels: int, classes: int):
  kwargs = {"impl": "direct" if impl == "direct" else "auto"} if state_lib.takes_impl(name) else {}
  return models.get_model(name, channels, classes, **kwargs)


def time_model(name: str, impl: str, batch: int = 16, channels: int = 1, classes: int = 36,
               repeats: int = 5) -> dict:
  model = _model(name, impl, channels, classes)
  tx = optax.adam(1e-3)
  x = np.random.default_rng(0).random((batch, 64, 64, channels), dtype=np.float32)
  compiled, state, sums, b = compiled_step(model, tx, batch, channels, classes,
                                           devices=jax.devices()[:1])
  params = jax.tree.map(lambda p: p[0], state.params)
  n_params = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(params))
  fwd = jax.jit(lambda p, x: model.apply({"params": p}, x))
  fwd_ms = _median_ms(lambda: fwd(params, x), repeats)
  step_ms = _timed_steps(compiled, state, sums, b, repeats)
  return {"model": name, "params": n_params, "forward_ms": fwd_ms, "train_step_ms": step_ms,
          "train_step_gflop": _flops(compiled) / 1e9}


def _flops(compiled) -> float:
  """Floating-point operations of a compiled computation, as XLA's cost analysis counts them
  (NaN where the backend gives none)."""
  costs = compiled.cost_analysis()
  if isinstance(costs, (list, tuple)):  # older jax: one dict per computation
    costs = costs[0] if costs else {}
  return float((costs or {}).get("flops", float("nan")))


def bench_models(names, impl: str, repeats: int) -> list[dict]:
  rows = []
  print(f"device: {jax.devices()[0]} ({jax.default_backend()}), malloc: {allocator.loaded()}, "
        f"batch 16, 64x64x1, SiConv path: {impl}", flush=True)
  header = (f"{'model':<18}{'params':>9}{'fwd ms':>10}{'step ms':>10}{'x std':>8}"
            f"{'GFLOP':>9}{'x std':>8}{'GFLOP/s':>9}")
  print(header)
  base = None
  for name in names:
    row = time_model(name, impl, repeats=repeats)
    if name == "standard":
      base = row
    row["ratio"] = row["train_step_ms"] / base["train_step_ms"] if base else float("nan")
    row["flop_ratio"] = (row["train_step_gflop"] / base["train_step_gflop"] if base
                         else float("nan"))
    row["gflop_per_s"] = row["train_step_gflop"] / row["train_step_ms"] * 1e3
    rows.append(row)
    print(f"{name:<18}{row['params']:>9}{row['forward_ms']:>10.1f}{row['train_step_ms']:>10.1f}"
          f"{row['ratio']:>8.2f}{row['train_step_gflop']:>9.2f}{row['flop_ratio']:>8.2f}"
          f"{row['gflop_per_s']:>9.1f}", flush=True)
  return rows


def bench_siconv(repeats: int) -> None:
  from stir_jax.layers.siconv import siconv2d
  rng = np.random.default_rng(0)
  print(f"device: {jax.devices()[0]}, malloc: {allocator.loaded()}; one SiConv2d layer, "
        "batch 16, forward+backward")
  for (size, cin, cout) in [(64, 1, 16), (58, 16, 32)]:
    x = jnp.asarray(rng.random((16, size, size, cin), dtype=np.float32))
    w = jnp.asarray(rng.normal(size=(7, 7, cin, cout)).astype(np.float32) * 0.05)
    bias = jnp.zeros(cout)
    s = (size - 7) // 2 + 1
    out = {}
    for impl in ("direct", "fft"):
      f = jax.jit(jax.grad(lambda x, w, b: jnp.sum(siconv2d(x, w, b, num_scales=s, impl=impl) ** 2),
                           argnums=(0, 1, 2)))
      out[impl] = _median_ms(lambda: f(x, w, bias), repeats)
    print(f"{size}x{size} {cin}->{cout}, {s} scales: direct {out['direct']:.0f} ms, "
          f"fft {out['fft']:.0f} ms, speed-up {out['direct'] / out['fft']:.1f}x", flush=True)


# --- seeds: N seeds in one program ------------------------------------------------------------

def bench_seeds(model_name: str = "standard", num_seeds: int = 8, steps: int = 10,
                batch_size: int = 16, batchings=("vmap", "unroll"), channels: int = 1,
                classes: int = 36) -> dict:
  """Train-step throughput of num_seeds seeds in one program (the engine's seed axis) against
  num_seeds sequential single-seed runs sharing one compiled step, on random host batches."""
  model = _model(model_name, "fast", channels, classes)
  tx = optax.adam(1e-3)
  rng = np.random.default_rng(0)
  batches = [{"image": rng.random((batch_size, 64, 64, channels), dtype=np.float32),
              "label": rng.integers(0, classes, batch_size).astype(np.int32),
              "scale": rng.integers(17, 65, batch_size).astype(np.int32),
              "mask": np.ones(batch_size, bool)} for _ in range(num_seeds)]
  inits = [jax.device_get(state_lib.create_train_state(model, tx, jax.random.PRNGKey(s), channels))
           for s in range(num_seeds)]
  out = {"model": model_name, "seeds": num_seeds, "steps": steps, "batch_size": batch_size,
         "device": f"{jax.devices()[0]} x{len(jax.devices())} ({jax.default_backend()})"}
  examples = num_seeds * steps * batch_size

  def run(n: int, batching: str, states: list, stacked_batches: list) -> tuple[float, float]:
    place = placement_lib.Placement(n, "jit", batching)
    step = place.train_step(steps_lib.train_step_fn(model, tx))
    held = [place.put_state(placement_lib.stack(states)), place.zero_sums(False)]
    placed = [place.put_train_batch(placement_lib.stack(bs)) for bs in stacked_batches]
    t = time.perf_counter()
    held[0], held[1] = step(held[0], held[1], placed[0])
    jax.block_until_ready(held[1])
    compile_s = time.perf_counter() - t
    t = time.perf_counter()
    for _ in range(steps):
      for b in placed:
        held[0], held[1] = step(held[0], held[1], b)
    jax.block_until_ready(held)
    return time.perf_counter() - t, compile_s

  seconds, compile_s = run(1, "unroll", inits[:1], [[b] for b in batches])
  out["sequential_seconds"], out["sequential_compile_seconds"] = seconds, compile_s
  out["sequential_examples_per_second"] = examples / seconds
  for batching in batchings:
    seconds, compile_s = run(num_seeds, batching, inits, [batches])
    place = placement_lib.Placement(num_seeds, "jit", batching)
    out[batching] = {"seconds": seconds, "compile_seconds": compile_s,
                     "examples_per_second": examples / seconds,
                     "speedup": out["sequential_seconds"] / seconds, "mesh": place.describe()}
  return out


def print_seeds(out: dict, batchings) -> None:
  print(f"device: {out['device']}, malloc: {allocator.loaded()}; {out['model']}, "
        f"batch {out['batch_size']}, "
        f"{out['steps']} timed steps per seed after a warm-up step")
  print(f"  {out['seeds']} sequential runs:       {out['sequential_examples_per_second']:8.1f} "
        f"examples/s ({out['sequential_seconds']:.2f} s; compile "
        f"{out['sequential_compile_seconds']:.1f} s, once)")
  for batching in batchings:
    r = out[batching]
    print(f"  {out['seeds']} seeds together, {batching:<6}: {r['examples_per_second']:8.1f} "
          f"examples/s ({r['seconds']:.2f} s; compile {r['compile_seconds']:.1f} s) "
          f"speedup {r['speedup']:.2f}x [{r['mesh']}]")


# --- scaling: devices share the work -----------------------------------------------------------

def scaling_probe(names, repeats: int, batch: int = 16) -> list[dict]:
  """In this process (its device count fixed at start): per model, the compiled train step's
  per-device GFLOP (XLA's cost analysis of the SPMD program), its step ms, and the number of
  all-gather operations in it."""
  rows = []
  for name in names:
    model = _model(name, "fast", 1, 36)
    compiled, state, sums, b = compiled_step(model, optax.adam(1e-3), batch, 1, 36)
    text = compiled.as_text()
    rows.append({"model": name, "devices": len(jax.devices()),
                 "gflop_per_device": _flops(compiled) / 1e9,
                 "all_gathers": text.count("all-gather-start") + text.count(" all-gather("),
                 "step_ms": _timed_steps(compiled, state, sums, b, repeats)})
  return rows


def _subprocess_env(devices: int) -> dict:
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
  proc = subprocess.run(cmd, env=_subprocess_env(devices), capture_output=True, text=True,
                        cwd=REPO, check=False)
  if proc.returncode:
    raise RuntimeError(f"the {devices}-device probe failed: {proc.stderr.strip()[-2000:]}")
  return [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]


def _train_epochs(model: str, dataset: str, epochs: int, env: dict) -> tuple[list[dict], dict]:
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
  rows, _ = _train_epochs(model, dataset, epochs, _subprocess_env(devices))
  return float(rows[-1]["epoch_seconds"])


def bench_malloc(names, dataset: str, epochs: int = 3, rounds: int = 1) -> list[dict]:
  """train.py's epoch time under the system malloc and under tcmalloc (`stir_jax.allocator`):
  per model, `rounds` pairs of runs in the order system, tcmalloc, then tcmalloc, system, and so
  on (a machine whose speed drifts favours neither); per run the median of epochs 2.. (epoch 1
  compiles), per allocator the mean over its runs, and the malloc each run's results.json names.
  Without tcmalloc installed both are "system"."""
  base = allocator.undecided_environment(_subprocess_env(1))
  envs = {"system": {**base, allocator.OPT_OUT: "0"}, "tcmalloc": base}
  print(f"train.py, emoji Mid2Rest (configs/paper.py), median of epochs 2-{epochs} per run")
  out = []
  for name in names:
    secs, ran_on = {"system": [], "tcmalloc": []}, {}
    for r in range(rounds):
      for label in (("system", "tcmalloc") if r % 2 == 0 else ("tcmalloc", "system")):
        rows, res = _train_epochs(name, dataset, epochs, envs[label])
        secs[label].append(statistics.median(row["epoch_seconds"] for row in rows[1:]))
        ran_on[label] = res["host"].get("allocator")
    row = {"model": name, "system_s": statistics.mean(secs["system"]),
           "tcmalloc_s": statistics.mean(secs["tcmalloc"]), "system_runs": secs["system"],
           "tcmalloc_runs": secs["tcmalloc"], "system_ran_on": ran_on["system"],
           "tcmalloc_ran_on": ran_on["tcmalloc"]}
    row["speedup"] = row["system_s"] / row["tcmalloc_s"]
    out.append(row)
    each = lambda label: ", ".join(f"{v:.1f}" for v in secs[label])
    print(f"{name:<18} {row['system_ran_on']} {row['system_s']:.1f} s ({each('system')}), "
          f"{row['tcmalloc_ran_on']} {row['tcmalloc_s']:.1f} s ({each('tcmalloc')}): "
          f"{row['speedup']:.2f}x", flush=True)
  return out


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


def main(argv=None) -> int:
  p = argparse.ArgumentParser(prog="python -m stir_jax.bench", description=__doc__.splitlines()[0])
  p.add_argument("what", choices=["models", "siconv", "seeds", "scaling", "scaling-probe",
                                  "malloc"])
  p.add_argument("--impl", choices=["fast", "direct"], default="fast",
                 help="SiConv path of the SiConv models (fast = FFT where possible)")
  p.add_argument("--models", default=",".join(models.model_names()),
                 help="comma-separated model names (standard is always timed first)")
  p.add_argument("--repeats", type=int, default=5)
  p.add_argument("--model", default="standard", help="seeds: the model")
  p.add_argument("--seeds", type=int, default=8, help="seeds: how many")
  p.add_argument("--steps", type=int, default=10, help="seeds: timed steps per seed")
  p.add_argument("--batch-size", type=int, default=16, help="seeds: batch size")
  p.add_argument("--batching", default="vmap,unroll", help="seeds: vmap and/or unroll")
  p.add_argument("--devices", type=int, default=8, help="scaling: fake CPU devices")
  p.add_argument("--epoch-models", default="pixel_pool",
                 help="scaling, malloc: models whose train.py epoch is timed ('' for none)")
  p.add_argument("--epochs", type=int, default=3, help="malloc: epochs per train.py run (2+)")
  p.add_argument("--rounds", type=int, default=1,
                 help="malloc: pairs of runs per model (alternating which goes first)")
  p.add_argument("--dataset", default="data/emoji.npz",
                 help="scaling, malloc: STIR file for train.py")
  from stir_jax import distributed  # pylint: disable=g-import-not-at-top
  distributed.add_arguments(p)
  args = p.parse_args(argv)
  from stir_jax import xla_flags  # pylint: disable=g-import-not-at-top
  xla_flags.apply()
  distributed.initialize_from_args(args)
  if args.what == "siconv":
    bench_siconv(args.repeats)
    return 0
  names = [n for n in args.models.split(",") if n]
  if args.what == "seeds":
    names = [args.model]
  unknown = [n for n in names if n not in models.MODELS]
  if unknown:
    print(f"error: unknown model(s) {', '.join(unknown)}; valid: {', '.join(models.MODELS)}",
          file=sys.stderr)
    return 2
  if args.what == "seeds":
    batchings = [b for b in args.batching.split(",") if b]
    if not batchings or any(b not in ("vmap", "unroll") for b in batchings):
      print(f"error: --batching takes vmap and/or unroll, got {args.batching!r}", file=sys.stderr)
      return 2
    if min(args.seeds, args.steps, args.batch_size) < 1:
      print("error: --seeds, --steps and --batch-size must be positive", file=sys.stderr)
      return 2
    print_seeds(bench_seeds(args.model, args.seeds, args.steps, args.batch_size, batchings),
                batchings)
    return 0
  if args.what == "scaling-probe":
    for row in scaling_probe(names, args.repeats):
      print(json.dumps(row), flush=True)
    return 0
  if args.what == "malloc":
    if args.epochs < 2 or args.rounds < 1:
      print("error: " + ("--epochs must be 2 or more (epoch 1 compiles)" if args.epochs < 2 else
                         "--rounds must be 1 or more"), file=sys.stderr)
      return 2
    epoch_models = [n for n in args.epoch_models.split(",") if n]
    bad = [n for n in epoch_models if n not in models.MODELS]
    if bad or not epoch_models or not os.path.isfile(args.dataset):
      print("error: " + (f"unknown model(s) {', '.join(bad)}" if bad else
                         "--epoch-models names no model" if not epoch_models else
                         f"no STIR file at {args.dataset}"), file=sys.stderr)
      return 2
    bench_malloc(epoch_models, args.dataset, args.epochs, args.rounds)
    return 0
  if args.what == "scaling":
    epoch_models = [n for n in args.epoch_models.split(",") if n]
    bench_scaling(names, args.devices, args.repeats, epoch_models, args.dataset)
    return 0
  names = ["standard"] + [n for n in names if n != "standard"]
  bench_models(names, args.impl, args.repeats)
  return 0


if __name__ == "__main__":
  sys.exit(main())
