"""Layer benchmarks on the pixel_pool model's two SiConv shapes (batch 16: 64x64 1->16 with 29
scales, 58x58 16->32 with 26 scales), core install only.

  siconv  one SiConv2d layer's direct and FFT paths, forward+backward
  pools   SiConv2d + scale pooling on the FFT path: stacked, then pooled, against fused
          (``siconv2d_pool``), forward and forward+backward (loss: sum of squares of the pooled
          output; layer 1: weight and bias gradients only, as in the model), the variants
          alternated within every repeat so that a shared, loaded machine affects them alike;
          medians and ratios to the first variant
"""
from __future__ import annotations

import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from stir_jax import runtime
from stir_jax.bench import timing
from stir_jax.layers import siconv
from stir_jax.layers.scale_pool import scale_pool

SHAPES = {"1": (64, 1, 16), "2": (58, 16, 32)}  # layer: (input size, in, out channels)


def layer_inputs(size: int, cin: int, cout: int, batch: int = 16, seed: int = 0):
  """Random (x, weight, bias) for a 7x7 SiConv layer on size x size inputs."""
  rng = np.random.default_rng(seed)
  x = jnp.asarray(rng.random((batch, size, size, cin), dtype=np.float32))
  w = jnp.asarray(rng.normal(size=(7, 7, cin, cout)).astype(np.float32) * 0.05)
  bias = jnp.asarray(rng.normal(size=cout).astype(np.float32) * 0.1)
  return x, w, bias


def bench_siconv(repeats: int) -> None:
  print(f"device: {jax.devices()[0]}, malloc: {runtime.malloc_name()}; one SiConv2d layer, "
        "batch 16, forward+backward")
  for size, cin, cout in SHAPES.values():
    x, w, bias = layer_inputs(size, cin, cout)
    s = siconv.num_scales_for(size, 7)
    out = {}
    for impl in ("direct", "fft"):
      f = jax.jit(jax.grad(lambda x, w, b, impl=impl: jnp.sum(
          siconv.siconv2d(x, w, b, num_scales=s, impl=impl) ** 2), argnums=(0, 1, 2)))
      out[impl] = timing.median_ms(lambda f=f: f(x, w, bias), repeats)
    print(f"{size}x{size} {cin}->{cout}, {s} scales: direct {out['direct']:.0f} ms, "
          f"fft {out['fft']:.0f} ms, speed-up {out['direct'] / out['fft']:.1f}x", flush=True)


def _pool_variants(num_scales, pool):
  def stacked(x, w, b):
    return scale_pool(siconv.siconv2d(x, w, b, num_scales=num_scales, impl="fft"), pool)

  def fused(x, w, b):
    return siconv.siconv2d_pool(x, w, b, num_scales=num_scales, impl="fft", pool=pool)

  return {f"{pool}:stacked": stacked, f"{pool}:fused": fused}


def bench_pools(layers, pools, repeats: int) -> None:
  for layer in layers:
    size, cin, cout = SHAPES[layer]
    s = siconv.num_scales_for(size, 7)
    x, w, bias = layer_inputs(size, cin, cout)
    # As in the model: layer 1's input is data (no input gradient), layer 2's is not.
    argnums = (1, 2) if layer == "1" else (0, 1, 2)
    fns = {}
    for pool in pools:
      for name, f in _pool_variants(s, pool).items():
        fns[name + " fwd"] = jax.jit(f)
        fns[name + " fwd+bwd"] = jax.jit(jax.grad(
            lambda x, w, b, f=f: jnp.sum(jnp.square(f(x, w, b)[0])), argnums=argnums))
    for f in fns.values():
      jax.block_until_ready(f(x, w, bias))
    times = {k: [] for k in fns}
    for _ in range(repeats):
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
