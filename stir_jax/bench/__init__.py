"""Benchmarks: `python -m stir_jax.bench <mode> [options]`.

  device   one command, any backend: every SiConv2d, grouped and 3-D convolution form, a train step
           of every STIR model and seed batching, timed within --budget-s, written to
           device_report.csv/.md with an estimate of the paper's grid on this device (`device`;
           core install only)
  models   per-model train step: parameters, forward and train-step ms (batch 16, 64x64, Adam),
           the step's FLOPs (XLA's cost analysis) and both as ratios to the standard model's, the
           rate achieved (GFLOP/s) (`models`)
  siconv   one SiConv layer's direct and FFT paths, forward+backward (`layers`)
  pools    SiConv2d + scale pooling on the FFT path: stacked then pooled, against fused (`layers`)
  seeds    N seeds in one program against N sequential runs (the engine's seed axis) (`seeds`)
  scaling  devices share the work: per-device FLOPs of the compiled step on D devices against one,
           step times, all-gathers, and train.py epoch times on D fake CPU devices (`scaling`)
  malloc   train.py epoch times under the system malloc against tcmalloc (`malloc`)

The input pipeline's bench stays `python -m stir_jax.data bench` (it needs TensorFlow). Timings are
medians over repeats after a warm-up (compilation excluded), through `timing`. models, seeds,
scaling and malloc run the training engine (extra ``train``); device, siconv and pools need the core
install only. Importing this package imports none of its modes: they load on first use.

The FLOP ratio is a floor for the time ratio unless a model runs its operations faster than the
standard model runs its convolutions.
"""
from __future__ import annotations

import importlib

# Names earlier versions (stir_jax/bench.py) offered, and the submodule that holds each now.
_MOVED = {"main": "cli", "compiled_step": "models", "time_model": "models",
          "bench_models": "models", "bench_seeds": "seeds", "print_seeds": "seeds",
          "bench_siconv": "layers", "scaling_probe": "scaling", "bench_scaling": "scaling",
          "epoch_seconds": "scaling", "bench_malloc": "malloc", "_flops": "timing"}


def __getattr__(name: str):
  if name not in _MOVED:
    raise AttributeError(f"module 'stir_jax.bench' has no attribute {name!r}")
  module = importlib.import_module(f"stir_jax.bench.{_MOVED[name]}")
  return getattr(module, "flops" if name == "_flops" else name)
