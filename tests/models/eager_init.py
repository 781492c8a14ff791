"""Eager (unjitted) ``init`` times, before and after the eager scan form of SiConv2d, side by side.

"before" forces the program an eager call compiled until now (SiConv2d's FFT form with its scales
unrolled, `stir_jax.layers.siconv_fft._forward`); "after" is what an eager call takes now (the scan
over scales, `_forward_scan`). Every measurement starts from cleared compilation caches
(`jax.clear_caches`), so each pays all its compilations, random-number kernels included, and the
variants alternate, so background load hits both alike.

  PYTHONPATH=. python tests/models/eager_init.py [--repeats 2] [--models standard,pixel_pool]
"""
import argparse
import contextlib
import statistics
import sys
import time

import jax
import jax.numpy as jnp

from stir_jax import models
from stir_jax.layers import siconv
from stir_jax.layers.siconv import SiConv2d


@contextlib.contextmanager
def unrolled_eager():
  """Eager SiConv2d calls compile the unrolled forward pass, as before the scan form."""
  saved = siconv._is_eager  # pylint: disable=protected-access
  siconv._is_eager = lambda *arrays: False  # pylint: disable=protected-access
  try:
    yield
  finally:
    siconv._is_eager = saved  # pylint: disable=protected-access


def eager_init_s(module, x) -> float:
  """Seconds of one eager ``module.init`` from cleared compilation caches."""
  jax.clear_caches()
  t = time.perf_counter()
  jax.block_until_ready(module.init(jax.random.PRNGKey(0), x))
  return time.perf_counter() - t


def main(argv=None) -> int:
  p = argparse.ArgumentParser(prog="tests/models/eager_init.py")
  p.add_argument("--repeats", type=int, default=2)
  p.add_argument("--models", default="standard,pixel_pool")
  args = p.parse_args(argv)
  if args.repeats < 1:
    print("error: --repeats must be at least 1", file=sys.stderr)
    return 2
  x = jnp.zeros((1, 64, 64, 1))
  jax.block_until_ready(x + 1)  # start the backend outside the timings
  cases = {"SiConv2d(16, pool='pixel')": SiConv2d(16, pool="pixel")}
  for name in args.models.split(","):
    try:
      cases[name] = models.get_model(name, 1, 10)
    except ValueError as e:
      print(f"error: {e}", file=sys.stderr)
      return 2
  print("module | before s | after s (median of %d; caches cleared before each)" % args.repeats)
  for label, module in cases.items():
    times = {"before": [], "after": []}
    for _ in range(args.repeats):
      with unrolled_eager():
        times["before"].append(eager_init_s(module, x))
      times["after"].append(eager_init_s(module, x))
    print(f"{label} | {statistics.median(times['before']):.2f} | "
          f"{statistics.median(times['after']):.2f}", flush=True)
  return 0


if __name__ == "__main__":
  sys.exit(main())
