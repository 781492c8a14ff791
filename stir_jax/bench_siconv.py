"""Side-by-side timings of SiConv2d + scale pooling on the FFT path: stacked, then pooled, against
fused (``siconv2d_pool``). `python -m stir_jax.bench_siconv [--repeats N] [--pools pixel,slice]`.

For the pixel_pool model's two layer shapes (batch 16: 64x64 1->16 with 29 scales, 58x58 16->32
with 26 scales) it times the forward and forward+backward (loss: sum of squares of the pooled
output; layer 1: weight and bias gradients only, as in the model) of each variant, alternating the
variants within every repeat so that a shared, loaded machine affects them alike, and prints
medians and ratios to the first variant.
"""
from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from stir_jax.layers import siconv
from stir_jax.layers.scale_pool import scale_pool


def _variants(num_scales, pool):
  def stacked(x, w, b):
    return scale_pool(siconv.siconv2d(x, w, b, num_scales=num_scales, impl="fft"), pool)

  def fused(x, w, b):
    return siconv.siconv2d_pool(x, w, b, num_scales=num_scales, impl="fft", pool=pool)

  return {f"{pool}:stacked": stacked, f"{pool}:fused": fused}


def main(argv=None) -> int:
  p = argparse.ArgumentParser(prog="python -m stir_jax.bench_siconv")
  p.add_argument("--repeats", type=int, default=3)
  p.add_argument("--layers", default="1,2")
  p.add_argument("--pools", default="pixel,slice,energy")
  args = p.parse_args(argv)
  rng = np.random.default_rng(0)
  shapes = {"1": (64, 1, 16), "2": (58, 16, 32)}
  for layer in args.layers.split(","):
    size, cin, cout = shapes[layer]
    s = siconv.num_scales_for(size, 7)
    x = jnp.asarray(rng.random((16, size, size, cin), dtype=np.float32))
    w = jnp.asarray(rng.normal(size=(7, 7, cin, cout)).astype(np.float32) * 0.05)
    bias = jnp.asarray(rng.normal(size=cout).astype(np.float32) * 0.1)
    # As in the model: layer 1's input is data (no input gradient), layer 2's is not.
    argnums = (1, 2) if layer == "1" else (0, 1, 2)
    fns = {}
    for pool in args.pools.split(","):
      for name, f in _variants(s, pool).items():
        fns[name + " fwd"] = jax.jit(f)

        def loss(x, w, b, f=f):
          return jnp.sum(jnp.square(f(x, w, b)[0]))

        fns[name + " fwd+bwd"] = jax.jit(jax.grad(loss, argnums=argnums))
    for f in fns.values():
      jax.block_until_ready(f(x, w, bias))
    times = {k: [] for k in fns}
    for _ in range(args.repeats):
      for k, f in fns.items():
        t = time.perf_counter()
        jax.block_until_ready(f(x, w, bias))
        times[k].append((time.perf_counter() - t) * 1e3)
    print(f"layer {layer}: {size}x{size} {cin}->{cout}, {s} scales, batch 16", flush=True)
    base = {}
    for k, v in times.items():
      name, kind = k.split(" ")
      group = (name.split(":")[0], kind)  # (pool, fwd or fwd+bwd)
      med = statistics.median(v)
      base.setdefault(group, med)
      print(f"  {k:<28}{med:>9.0f} ms  x{med / base[group]:.2f}", flush=True)
  return 0


if __name__ == "__main__":
  raise SystemExit(main())
