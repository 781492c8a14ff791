"""The one timing helper of the benchmarks: medians after a warm-up, compile times, FLOPs, budgets."""
from __future__ import annotations

import statistics
import time
from typing import Any, Callable, Sequence

import jax


def median_ms(fn: Callable[[], Any], repeats: int, budget: "Budget | None" = None) -> float:
  """Median wall time of fn() in ms over `repeats` calls, after one warm-up call (which compiles);
  every call is waited for (jax.block_until_ready). With a budget, fewer calls (at least one)
  where `repeats` of them would outlast what is left of it, judged by the warm-up call."""
  t = time.perf_counter()
  jax.block_until_ready(fn())
  if budget is not None:
    repeats = max(1, min(repeats, int(budget.left() / max(time.perf_counter() - t, 1e-9))))
  times = []
  for _ in range(repeats):
    t = time.perf_counter()
    jax.block_until_ready(fn())
    times.append((time.perf_counter() - t) * 1e3)
  return statistics.median(times)


def compile_and_time(fn: Callable, args: Sequence[Any], repeats: int,
                     budget: "Budget | None" = None) -> tuple[float, float]:
  """(seconds to trace and compile jax.jit(fn) for args, median ms per call of the compiled fn)."""
  t = time.perf_counter()
  compiled = jax.jit(fn).lower(*args).compile()
  compile_s = time.perf_counter() - t
  return compile_s, median_ms(lambda: compiled(*args), repeats, budget)


def flops(compiled) -> float:
  """Floating-point operations of a compiled computation, as XLA's cost analysis counts them
  (NaN where the backend gives none)."""
  costs = compiled.cost_analysis()
  if isinstance(costs, (list, tuple)):  # older jax: one dict per computation
    costs = costs[0] if costs else {}
  return float((costs or {}).get("flops", float("nan")))


class Budget:
  """Wall-clock seconds a benchmark may spend, counted from construction."""

  def __init__(self, seconds: float, clock: Callable[[], float] = time.perf_counter):
    self.seconds, self._clock, self._start = seconds, clock, clock()

  def spent(self) -> float:
    return self._clock() - self._start

  def left(self) -> float:
    return self.seconds - self.spent()
