"""Benchmarks: `python -m stir_jax.bench models [--impl fast|direct] [--models a,b] [--repeats N]`.

Prints, per model: parameter count, forward ms and train-step ms (batch 16, 64x64 inputs, Adam),
the ratio of the train step to the standard model's, the train step's floating-point operations as
XLA's cost analysis of the compiled step counts them (GFLOP, and that count's ratio to the standard
model's), the rate achieved (GFLOP/s), and the JAX device. Timings are medians over repeats after a
warm-up (compilation excluded). `siconv` times one SiConv layer's two paths.

The FLOP ratio is a floor for the time ratio unless a model runs its operations faster than the
standard model runs its convolutions.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from stir_jax import models, training


def _median_ms(fn, repeats: int) -> float:
  jax.block_until_ready(fn())
  times = []
  for _ in range(repeats):
    t = time.perf_counter()
    jax.block_until_ready(fn())
    times.append((time.perf_counter() - t) * 1e3)
  return statistics.median(times)


def time_model(name: str, impl: str, batch: int = 16, channels: int = 1, classes: int = 36,
               repeats: int = 5) -> dict:
  kwargs = {"impl": "direct" if impl == "direct" else "auto"} if training.takes_impl(name) else {}
  model = models.get_model(name, channels, classes, **kwargs)
  tx = optax.adam(1e-3)
  rng = np.random.default_rng(0)
  x = rng.random((batch, 64, 64, channels), dtype=np.float32)
  b = {"image": x, "label": rng.integers(0, classes, batch).astype(np.int32),
       "mask": np.ones(batch, bool)}
  state = training.create_train_state(model, tx, jax.random.PRNGKey(0), channels)
  n_params = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(state.params))
  fwd = jax.jit(lambda p, x: model.apply({"params": p}, x))
  fwd_ms = _median_ms(lambda: fwd(state.params, x), repeats)
  step = training.make_train_step(model, tx).lower(state, b).compile()
  holder = [state]

  def one_step():
    holder[0], stats = step(holder[0], b)
    return stats

  step_ms = _median_ms(one_step, repeats)
  return {"model": name, "params": n_params, "forward_ms": fwd_ms, "train_step_ms": step_ms,
          "train_step_gflop": _flops(step) / 1e9}


def _flops(compiled) -> float:
  """Floating-point operations of a compiled computation, as XLA's cost analysis counts them
  (NaN where the backend gives none)."""
  costs = compiled.cost_analysis()
  if isinstance(costs, (list, tuple)):  # older jax: one dict per computation
    costs = costs[0] if costs else {}
  return float((costs or {}).get("flops", float("nan")))


def bench_models(names, impl: str, repeats: int) -> list[dict]:
  rows = []
  print(f"device: {jax.devices()[0]} ({jax.default_backend()}), batch 16, 64x64x1, "
        f"SiConv path: {impl}", flush=True)
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
  print(f"device: {jax.devices()[0]}; one SiConv2d layer, batch 16, forward+backward")
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


def main(argv=None) -> int:
  p = argparse.ArgumentParser(prog="python -m stir_jax.bench", description=__doc__.splitlines()[0])
  p.add_argument("what", choices=["models", "siconv"])
  p.add_argument("--impl", choices=["fast", "direct"], default="fast",
                 help="SiConv path of the SiConv models (fast = FFT where possible)")
  p.add_argument("--models", default=",".join(models.model_names()),
                 help="comma-separated model names (standard is always timed first)")
  p.add_argument("--repeats", type=int, default=5)
  args = p.parse_args(argv)
  if args.what == "siconv":
    bench_siconv(args.repeats)
    return 0
  names = [n for n in args.models.split(",") if n]
  unknown = [n for n in names if n not in models.MODELS]
  if unknown:
    print(f"error: unknown model(s) {', '.join(unknown)}; valid: {', '.join(models.MODELS)}",
          file=sys.stderr)
    return 2
  names = ["standard"] + [n for n in names if n != "standard"]
  bench_models(names, args.impl, args.repeats)
  return 0


if __name__ == "__main__":
  sys.exit(main())
