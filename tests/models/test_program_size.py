"""The compiled program does not grow with the batch, and it stays small.

Targets (issue 12): the lowered pixel_pool train step at batch 64 within 1.2x of its size at batch
4; the exported (jax.export) pixel_pool train step under 1 MB of serialized StableHLO; an eager
`model.init` of pixel_pool within 2x of the standard model's (issue 28: eager SiConv2d calls compile
the scan over scales, whose program does not grow with the number of scales; measure with
`PYTHONPATH=. python tests/models/eager_init.py`; tests/models/test_export.py checks every model's
export for cuda and tpu).

Run as a script for the table of every model (sizes, compile, eager init and step times):
  PYTHONPATH=. python tests/models/test_program_size.py [--models a,b] [--batch 16]
"""
import argparse
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from stir_jax import models

MB = 1 << 20


def train_step(model, tx):
  """A plain train step: mean cross-entropy, its gradient, one optax update."""

  def step(params, opt_state, x, labels):
    def loss(p):
      logits = model.apply({"params": p}, x).astype(jnp.float32)
      return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

    value, grads = jax.value_and_grad(loss)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, value

  return step


def step_args(model, tx, batch: int, channels: int = 1):
  """Abstract (params, opt_state, x, labels) of a train step at this batch size."""
  x = jax.ShapeDtypeStruct((batch, 64, 64, channels), jnp.float32)
  params = jax.eval_shape(model.init, jax.random.PRNGKey(0), x)["params"]
  opt_state = jax.eval_shape(tx.init, params)
  return params, opt_state, x, jax.ShapeDtypeStruct((batch,), jnp.int32)


def lowered_size(name: str, batch: int) -> int:
  """Characters of the lowered (StableHLO text) train step."""
  model, tx = models.get_model(name, 1, 10), optax.adam(1e-3)
  return len(jax.jit(train_step(model, tx)).lower(*step_args(model, tx, batch)).as_text())


def exported_bytes(name: str, batch: int, platforms=("cpu",)) -> int:
  """Bytes of the serialized StableHLO (bytecode) of the train step exported with jax.export."""
  model, tx = models.get_model(name, 1, 10), optax.adam(1e-3)
  exported = jax.export.export(jax.jit(train_step(model, tx)), platforms=platforms)(
      *step_args(model, tx, batch))
  return len(exported.mlir_module_serialized)


def test_pixel_pool_program_does_not_grow_with_batch():
  small, large = lowered_size("pixel_pool", 4), lowered_size("pixel_pool", 64)
  assert large <= 1.2 * small, (small, large)


def test_pixel_pool_export_is_small():
  size = exported_bytes("pixel_pool", 16)
  assert size < MB, size


def _siconv_program_ops(n: int, platform) -> int:
  """Operations in SiConv2d + fused pixel pool (1 -> 16 channels, 7x7, on n x n) lowered for CPU,
  as an eager call (platform "cpu") or a traced one (None) compiles it (lines defining a value;
  the tabulated (S, N, k) resize taps, a constant, count once whatever their size)."""
  from stir_jax.layers import siconv  # pylint: disable=g-import-not-at-top
  shapes = [jax.ShapeDtypeStruct(s, jnp.float32) for s in ((1, n, n, 1), (7, 7, 1, 16), (16,))]
  traced = siconv._siconv2d_pool.trace(  # pylint: disable=protected-access
      *shapes, num_scales=siconv.num_scales_for(n, 7), interpolation="bicubic", pool="pixel",
      impl="auto", precision=jax.lax.Precision.HIGHEST, platform=platform)
  text = traced.lower(lowering_platforms=("cpu",)).as_text()
  return sum(" = stablehlo." in line or ' = "stablehlo.' in line for line in text.splitlines())


def test_eager_siconv_program_does_not_grow_with_the_scales():
  """The eager form (a scan) is one program body for any number of scales; the traced form (the
  unrolled loop, faster to run) grows with them: 15 scales at 36x36, 29 at 64x64."""
  assert _siconv_program_ops(64, "cpu") == _siconv_program_ops(36, "cpu")
  assert _siconv_program_ops(64, None) > 1.5 * _siconv_program_ops(36, None)


# --- The table (script mode).

def _eager_init_s(name: str) -> float:
  model = models.get_model(name, 1, 10)
  x = jnp.zeros((1, 64, 64, 1))
  t = time.perf_counter()
  jax.block_until_ready(model.init(jax.random.PRNGKey(0), x))
  return time.perf_counter() - t


def _compile_and_step(name: str, batch: int, repeats: int = 3) -> tuple[float, float]:
  model, tx = models.get_model(name, 1, 10), optax.adam(1e-3)
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.random((batch, 64, 64, 1), np.float32))
  labels = jnp.asarray(rng.integers(0, 10, batch), jnp.int32)
  params = jax.jit(model.init)(jax.random.PRNGKey(0), x[:1])["params"]
  opt_state = tx.init(params)
  t = time.perf_counter()
  step = jax.jit(train_step(model, tx)).lower(params, opt_state, x, labels).compile()
  compile_s = time.perf_counter() - t
  jax.block_until_ready(step(params, opt_state, x, labels))
  times = []
  for _ in range(repeats):
    t = time.perf_counter()
    jax.block_until_ready(step(params, opt_state, x, labels))
    times.append(time.perf_counter() - t)
  return compile_s, statistics.median(times)


def main(argv=None) -> int:
  from stir_jax import runtime  # pylint: disable=g-import-not-at-top
  p = argparse.ArgumentParser()
  p.add_argument("--models", default=",".join(models.model_names()))
  p.add_argument("--batch", type=int, default=16)
  p.add_argument("--no-eager", action="store_true")
  args = p.parse_args(argv)
  if not runtime.apply_xla_flags():
    print("note: YNNPACK flag not applied (already set, opted out, or backend started)")
  print("model | lowered B=4 | lowered B=64 | ratio | export B=16 (bytes) | compile s | "
        f"eager init s | step ms (B={args.batch})", flush=True)
  for name in args.models.split(","):
    small, large = lowered_size(name, 4), lowered_size(name, 64)
    exported = exported_bytes(name, 16)
    compile_s, step_s = _compile_and_step(name, args.batch)
    init_s = float("nan") if args.no_eager else _eager_init_s(name)
    print(f"{name} | {small} | {large} | {large / small:.2f} | {exported} | {compile_s:.1f} | "
          f"{init_s:.1f} | {step_s * 1e3:.0f}", flush=True)
  return 0


if __name__ == "__main__":
  sys.exit(main())
