"""Opt-in CPU compiler settings: `apply()` turns XLA:CPU's YNNPACK convolution fusions off.

Nothing here runs on import; importing stir_jax never touches XLA_FLAGS. The project's entry points
(train.py, eval.py, the benchmarks) and the test suite call `apply()`; a library user who runs the
layers on CPU may call it too:

>>> from stir_jax import xla_flags
>>> xla_flags.apply()      # before the first JAX computation (or jax.devices()) of the process
>>> import jax             # importing jax before apply() is fine; running anything is not

Why. Recent jaxlib releases hand convolutions on CPU to YNNPACK fusions. For the 7x7 layers of the
STIR models these run far slower on x86 than XLA's own (Eigen) convolutions: on a 2-core Sapphire
Rapids VM (jaxlib 0.10.2), layer 2 of the standard model (16->32 channels, 58x58 input, batch 16)
takes 115 ms forward with YNNPACK and 14 ms without, and the standard model's train step drops from
about 390 ms to about 80 ms. `apply()` therefore adds `--xla_cpu_experimental_ynn_fusion_type=` (an
empty list: no YNNPACK fusions) to the XLA_FLAGS environment variable.

It does so only when
- the installed jaxlib knows the flag (an unknown flag in XLA_FLAGS aborts the process),
- XLA_FLAGS does not already set it, and
- STIR_JAX_KEEP_XLA_FLAGS is unset (set it to 1 to keep XLA's defaults).
The flag only affects the CPU backend; GPU and TPU runs are unchanged. XLA reads XLA_FLAGS once,
when JAX starts its first backend, so `apply()` after a JAX computation has no effect (it then
warns and returns False); `ynn_conv_active()` reports what the running process does.
"""
from __future__ import annotations

import importlib.util
import mmap
import os
import pathlib
import sys
import warnings

YNN_FLAG = "--xla_cpu_experimental_ynn_fusion_type"


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


def apply() -> bool:
  """Turns XLA:CPU's YNNPACK fusions off for this process through XLA_FLAGS, where that is safe.

  Call it once, early: before the first JAX computation, `jax.devices()` or anything else that
  starts a backend (importing jax first is fine). The entry points of this project and
  tests/conftest.py do. It edits the XLA_FLAGS environment variable of this process (and so of
  processes it starts afterwards) and nothing else.

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
    warnings.warn("stir_jax.xla_flags.apply() was called after JAX started its backend; XLA_FLAGS "
                  "is read only at start-up, so YNNPACK fusions stay on. Call it first.",
                  stacklevel=2)
    return False
  os.environ["XLA_FLAGS"] = f"{flags} {YNN_FLAG}=".strip()
  return True


def ynn_conv_active() -> bool:
  """Whether this process's CPU backend compiles a 7x7 convolution into a YNNPACK fusion."""
  import jax
  import jax.numpy as jnp
  if jax.default_backend() != "cpu":
    return False
  x = jnp.zeros((16, 58, 58, 16))
  k = jnp.zeros((7, 7, 16, 32))
  fn = jax.jit(lambda x, k: jax.lax.conv_general_dilated(
      x, k, (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC")).max())
  return "__ynn_fusion" in fn.lower(x, k).compile().as_text()
