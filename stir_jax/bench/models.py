"""`bench models`: per model, the engine's train step (batch 16, 64x64, Adam): parameters, forward
and train-step ms, the step's FLOPs (XLA's cost analysis) and their ratios to the standard model's.

Needs the extra ``train`` (it runs the engine's own placement and step, `stir_jax.train`).
"""
from __future__ import annotations

import jax
import numpy as np
import optax

from stir_jax import experiment, models, runtime
from stir_jax.bench import timing
from stir_jax.train import placement as placement_lib, program


def compiled_step(model, tx, batch: int, channels: int, classes: int, devices=None,
                  seed: int = 0):
  """The engine's train step for one seed (`stir_jax.train.program`), compiled ahead of time on
  `devices` (all by default), with a placed state, zero sums and a random placed batch:
  (compiled, state, sums, batch)."""
  rng = np.random.default_rng(seed)
  exp = experiment.from_config({**experiment.DEFAULTS, "batch_size": batch})
  prog = program.build(exp, num_channels=channels, num_classes=classes, steps_per_epoch=1,
                       model=model, tx=tx)
  place, step, _ = prog.placed(1, devices)
  state = place.put_state(placement_lib.stack([prog.init_state(0)]))
  b = place.put_train_batch(placement_lib.stack(
      [placement_lib.random_batch(rng, batch, channels, classes)]))
  sums = place.zero_sums(per_scale=False)
  return step.lower(state, sums, b).compile(), state, sums, b


def timed_steps(compiled, state, sums, batch, repeats: int) -> float:
  """Median ms of the compiled engine step, each call on the state the previous one returned."""
  holder = [state, sums]

  def one_step():
    holder[0], holder[1] = compiled(holder[0], holder[1], batch)
    return holder[1]

  return timing.median_ms(one_step, repeats)


def build(name: str, impl: str, channels: int, classes: int, **kwargs):
  """The registered model with its layers in form `impl` ("auto" | "direct" | "fft"; the registry
  passes impl to every model that declares it)."""
  return models.get_model(name, channels, classes, impl=impl, **kwargs)


def time_model(name: str, impl: str, batch: int = 16, channels: int = 1, classes: int = 36,
               repeats: int = 5) -> dict:
  model = build(name, impl, channels, classes)
  tx = optax.adam(1e-3)
  x = np.random.default_rng(0).random((batch, 64, 64, channels), dtype=np.float32)
  compiled, state, sums, b = compiled_step(model, tx, batch, channels, classes,
                                           devices=jax.devices()[:1])
  params = jax.tree.map(lambda p: p[0], state.params)
  n_params = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(params))
  fwd = jax.jit(lambda p, x: model.apply({"params": p}, x))
  fwd_ms = timing.median_ms(lambda: fwd(params, x), repeats)
  step_ms = timed_steps(compiled, state, sums, b, repeats)
  return {"model": name, "params": n_params, "forward_ms": fwd_ms, "train_step_ms": step_ms,
          "train_step_gflop": timing.flops(compiled) / 1e9}


def bench_models(names, impl: str, repeats: int) -> list[dict]:
  rows = []
  print(f"device: {jax.devices()[0]} ({jax.default_backend()}), malloc: {runtime.malloc_name()}, "
        f"batch 16, 64x64x1, impl {impl}", flush=True)
  header = (f"{'model':<18}{'params':>9}{'fwd ms':>10}{'step ms':>10}{'x std':>8}"
            f"{'GFLOP':>9}{'x std':>8}{'GFLOP/s':>9}")
  print(header)
  base = None
  for name in names:
    try:
      row = time_model(name, impl, repeats=repeats)
    except ValueError as e:  # a model without that form (e.g. dss has only the direct one)
      print(f"{name:<18}skipped: {e}", flush=True)
      continue
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
