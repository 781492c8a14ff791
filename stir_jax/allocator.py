"""tcmalloc for the command-line entry points on Linux CPUs.

XLA:CPU allocates and frees large buffers at every step; under glibc's malloc those go back to the
kernel and are faulted in again, so on 2 cores a quarter of a SiConv model's training time was
spent in the kernel (energy_pool on STIR-emoji, `vmstat`: 20-30% system time). With tcmalloc
preloaded a run gives the same numbers bit for bit, and `python -m stir_jax.bench malloc`
measured epochs 1.68x (pixel_pool) and 1.63x (energy_pool) shorter there; the standard CNN's did
not change (README, "Cost").

`use_tcmalloc()` is what `train.py`, `eval.py`, `python -m stir_jax.sweep` and `python -m
stir_jax.bench` call first when run as programs: if tcmalloc is installed (Debian/Ubuntu:
`apt-get install libtcmalloc-minimal4`), no other allocator is loaded and the user has not said
no (``STIR_JAX_TCMALLOC=0``), the process re-executes itself once with the library in
``LD_PRELOAD``. Importing this module, or the package, does nothing of the sort.
"""
from __future__ import annotations

import ctypes.util
import os
import sys
from typing import Callable, Mapping, Optional

OPT_OUT = "STIR_JAX_TCMALLOC"        # "0": keep the allocator the process started with
_TRIED = "_STIR_JAX_TCMALLOC_TRIED"  # set in the re-executed process: never twice
_KNOWN = {"libtcmalloc": "tcmalloc", "libjemalloc": "jemalloc", "libmimalloc": "mimalloc"}


def loaded(maps_path: str = "/proc/self/maps") -> Optional[str]:
  """The malloc replacement mapped into this process ("tcmalloc", "jemalloc", "mimalloc"),
  "system" when none is, or None where /proc is not there to tell (not Linux)."""
  try:
    with open(maps_path) as f:
      maps = f.read()
  except OSError:
    return None
  for prefix, name in _KNOWN.items():
    if "/" + prefix in maps:
      return name
  return "system"


def find_tcmalloc() -> Optional[str]:
  """The tcmalloc shared library's name as the dynamic loader finds it (None if not installed)."""
  return ctypes.util.find_library("tcmalloc_minimal") or ctypes.util.find_library("tcmalloc")


def preload_environment(environ: Mapping[str, str], platform: str, current: Optional[str],
                        library: Optional[str]) -> Optional[dict]:
  """The environment to re-execute with, or None to run as we are.

  Args:
    environ: the process environment.
    platform: ``sys.platform``.
    current: what `loaded` says of this process.
    library: what `find_tcmalloc` found.
  """
  if (platform != "linux" or current != "system" or library is None
      or environ.get(OPT_OUT, "1") == "0" or environ.get(_TRIED)):
    return None
  preload = " ".join(p for p in (library, environ.get("LD_PRELOAD", "")) if p)
  return {**environ, "LD_PRELOAD": preload, _TRIED: "1"}


def undecided_environment(environ: Mapping[str, str]) -> dict:
  """environ without any malloc decision (no LD_PRELOAD, no opt-out, no re-execution mark): a
  child process started with it decides for itself, as a fresh one would."""
  return {k: v for k, v in environ.items() if k not in ("LD_PRELOAD", OPT_OUT, _TRIED)}


def use_tcmalloc(execve: Callable = os.execve, before_exec: Optional[Callable] = None) -> None:
  """Re-executes this program (same interpreter, same arguments) with tcmalloc preloaded, where
  `preload_environment` says so; returns otherwise. Call it before anything heavy is imported.
  before_exec: called just before, e.g. to give stdout back from an output capture."""
  env = preload_environment(os.environ, sys.platform, loaded(), find_tcmalloc())
  if env is None:
    return
  if before_exec is not None:
    before_exec()
  sys.stdout.flush()
  sys.stderr.flush()
  execve(sys.executable, sys.orig_argv, env)
