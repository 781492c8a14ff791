"""Process tuning for the entry points: tcmalloc, the CPU compiler flag, and the extras they need.

Only the entry points call what changes the process (train.py, eval.py, `python -m stir_jax.sweep`,
`python -m stir_jax.bench`, tests/conftest.py); importing this module, or the package, does nothing.

  prepare(extra)     first thing an entry point does: one line and exit 2 when the extra it needs
                     is missing, then `use_tcmalloc`, naming a missing tcmalloc once (stderr)
  use_tcmalloc()     re-executes the program once with tcmalloc in LD_PRELOAD where installed
  apply_xla_flags()  turns XLA:CPU's YNNPACK convolution fusions off (before the backend starts)
  malloc_name()      the malloc this process runs on; re-executes nothing (the engine records it)

tcmalloc. XLA:CPU allocates and frees large buffers at every step; under glibc's malloc those go back
to the kernel and are faulted in again, so on 2 cores a quarter of a SiConv model's training time
was spent in the kernel (energy_pool on STIR-emoji, `vmstat`: 20-30% system time). With tcmalloc
preloaded a run gives the same numbers bit for bit, and `python -m stir_jax.bench malloc` measured
epochs 1.68x (pixel_pool) and 1.63x (energy_pool) shorter there; the standard CNN's did not change.
`use_tcmalloc` re-executes where tcmalloc is installed (Debian/Ubuntu: `apt-get install
libtcmalloc-minimal4`), no other allocator is loaded and the user has not said no
(``STIR_JAX_TCMALLOC=0``).

The compiler flag. Recent jaxlib releases hand convolutions on CPU to YNNPACK fusions. For the 7x7
layers of the STIR models these run far slower on x86 than XLA's own (Eigen) convolutions: on a
2-core Sapphire Rapids VM (jaxlib 0.10.2), layer 2 of the standard model (16->32 channels, 58x58
input, batch 16) takes 115 ms forward with YNNPACK and 14 ms without, and the standard model's train
step drops from about 390 ms to about 80 ms. `apply_xla_flags()` therefore adds
`--xla_cpu_experimental_ynn_fusion_type=` (an empty list: no YNNPACK fusions) to XLA_FLAGS, only
when the installed jaxlib knows the flag (an unknown flag aborts the process), XLA_FLAGS does not set
it already, and STIR_JAX_KEEP_XLA_FLAGS is unset. GPU and TPU runs are unchanged. A library user who
runs the layers on CPU may call it too:

>>> from stir_jax import runtime
>>> runtime.apply_xla_flags()  # before the first JAX computation (or jax.devices()) of the process
"""
from __future__ import annotations

import ctypes.util
import importlib.util
import mmap
import os
import pathlib
import sys
from typing import Callable, Mapping, Optional, TextIO
import warnings

from stir_jax import _optional

OPT_OUT = "STIR_JAX_TCMALLOC"        # "0": keep the allocator the process started with
_TRIED = "_STIR_JAX_TCMALLOC_TRIED"  # set in the re-executed process: never twice
_NOTED = "_STIR_JAX_TCMALLOC_NOTED"  # a missing tcmalloc was named: not again in child processes
_KNOWN = {"libtcmalloc": "tcmalloc", "libjemalloc": "jemalloc", "libmimalloc": "mimalloc"}
INSTALL_TCMALLOC = "apt-get install libtcmalloc-minimal4"
YNN_FLAG = "--xla_cpu_experimental_ynn_fusion_type"


# --- malloc --------------------------------------------------------------------------------------

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


def malloc_name() -> Optional[str]:
  """The malloc this process runs on (see `loaded`); for run records. Changes nothing."""
  return loaded()


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


def missing_tcmalloc_note(environ: Mapping[str, str], platform: str, current: Optional[str],
                          library: Optional[str]) -> Optional[str]:
  """One line naming a missing tcmalloc and its install line, or None where there is nothing to
  say (not Linux, another malloc loaded, tcmalloc found, opted out, or named already)."""
  if (platform != "linux" or current != "system" or library is not None
      or environ.get(OPT_OUT, "1") == "0" or environ.get(_NOTED)):
    return None
  return (f"note: tcmalloc is not installed; SiConv models train about 1.6x slower on the system "
          f"malloc: {INSTALL_TCMALLOC} (STIR_JAX_TCMALLOC=0 silences this)")


def undecided_environment(environ: Mapping[str, str]) -> dict:
  """environ without any malloc decision (no LD_PRELOAD, no opt-out, no re-execution mark): a
  child process started with it decides for itself, as a fresh one would."""
  return {k: v for k, v in environ.items() if k not in ("LD_PRELOAD", OPT_OUT, _TRIED)}


def use_tcmalloc(execve: Callable = os.execve, before_exec: Optional[Callable] = None,
                 note: Optional[TextIO] = None) -> None:
  """Re-executes this program (same interpreter, same arguments) with tcmalloc preloaded, where
  `preload_environment` says so; returns otherwise. Call it before anything heavy is imported.

  Args:
    execve: os.execve (tests pass a recorder).
    before_exec: called just before, e.g. to give stdout back from an output capture.
    note: where to write `missing_tcmalloc_note` (None: nowhere); it is written once per process
      tree (child processes inherit a mark).
  """
  current, library = loaded(), find_tcmalloc()
  env = preload_environment(os.environ, sys.platform, current, library)
  if env is None:
    line = missing_tcmalloc_note(os.environ, sys.platform, current, library)
    if line and note is not None:
      print(line, file=note, flush=True)
      os.environ[_NOTED] = "1"
    return
  if before_exec is not None:
    before_exec()
  sys.stdout.flush()
  sys.stderr.flush()
  execve(sys.executable, sys.orig_argv, env)


def prepare(extra: Optional[str] = None) -> None:
  """What an entry point does first: where `extra` ("data", "train") lacks a package, one line on
  stderr and exit status 2; then `use_tcmalloc`, naming a missing tcmalloc on stderr."""
  if extra is not None:
    absent = _optional.missing(extra)
    if absent:
      print(f"error: {_optional.message(absent[0], extra)}", file=sys.stderr)
      sys.exit(2)
  use_tcmalloc(note=sys.stderr)


# --- the CPU compiler flag -----------------------------------------------------------------------

def _jaxlib_knows(flag: str) -> bool:
  spec = importlib.util.find_spec("jaxlib")
  if spec is None or not spec.submodule_search_locations:
    return False
  needle = flag.lstrip("-").encode()
  for root in spec.submodule_search_locations:
    for lib in sorted(pathlib.Path(root).glob("*.so")):
      if lib.stat().st_size < 1 << 20:  # small stubs; the flag table lives in the big library
        continue
      with open(lib, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
        if m.find(needle) >= 0:
          return True
  return False


def _backend_started() -> bool:
  """Whether this process has already started a JAX backend (then XLA_FLAGS is read already)."""
  bridge = sys.modules.get("jax._src.xla_bridge")
  started = getattr(bridge, "backends_are_initialized", None)
  return bool(started and started())


def apply_xla_flags() -> bool:
  """Turns XLA:CPU's YNNPACK fusions off for this process through XLA_FLAGS, where that is safe.

  Call it once, early: before the first JAX computation, `jax.devices()` or anything else that
  starts a backend (importing jax first is fine). It edits the XLA_FLAGS environment variable of
  this process (and so of processes it starts afterwards) and nothing else.

  Returns:
    True if the flag was added; False if STIR_JAX_KEEP_XLA_FLAGS is set, XLA_FLAGS already names
    the flag, the installed jaxlib does not know it, or a backend has already started (a warning
    says so: the flag would be ignored).
  """
  flags = os.environ.get("XLA_FLAGS", "")
  if os.environ.get("STIR_JAX_KEEP_XLA_FLAGS") or YNN_FLAG in flags:
    return False
  if not _jaxlib_knows(YNN_FLAG):
    return False
  if _backend_started():
    warnings.warn("stir_jax.runtime.apply_xla_flags() was called after JAX started its backend; "
                  "XLA_FLAGS is read only at start-up, so YNNPACK fusions stay on. Call it first.",
                  stacklevel=2)
    return False
  os.environ["XLA_FLAGS"] = f"{flags} {YNN_FLAG}=".strip()
  return True


def ynn_conv_active() -> bool:
  """Whether this process's CPU backend compiles a 7x7 convolution into a YNNPACK fusion."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  if jax.default_backend() != "cpu":
    return False
  x = jnp.zeros((16, 58, 58, 16))
  k = jnp.zeros((7, 7, 16, 32))
  fn = jax.jit(lambda x, k: jax.lax.conv_general_dilated(
      x, k, (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC")).max())
  return "__ynn_fusion" in fn.lower(x, k).compile().as_text()
