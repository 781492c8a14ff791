"""`bench seeds`: N seeds in one program (the engine's seed axis) against N sequential runs.

Needs the extra ``train`` (the engine's placement and step, `stir_jax.train`).
"""
from __future__ import annotations

import time

import jax
import numpy as np
import optax

from stir_jax import runtime
from stir_jax.bench import models as models_bench
from stir_jax.train import placement as placement_lib, state as state_lib, steps as steps_lib


def bench_seeds(model_name: str = "standard", num_seeds: int = 8, steps: int = 10,
                batch_size: int = 16, batchings=("vmap", "unroll"), channels: int = 1,
                classes: int = 36) -> dict:
  """Train-step throughput of num_seeds seeds in one program (the engine's seed axis) against
  num_seeds sequential single-seed runs sharing one compiled step, on random host batches."""
  model = models_bench.build(model_name, "auto", channels, classes)
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
  print(f"device: {out['device']}, malloc: {runtime.malloc_name()}; {out['model']}, "
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
