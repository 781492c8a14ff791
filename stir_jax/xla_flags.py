"""CPU compiler settings that stir_jax applies before JAX starts its backend.

Recent jaxlib releases hand convolutions on CPU to YNNPACK fusions. For the 7x7 layers of the
STIR models these run far slower on x86 than XLA's own (Eigen) convolutions: on a 2-core
Sapphire Rapids VM (jaxlib 0.10.2), layer 2 of the standard model (16->32 channels, 58x58 input,
batch 16) takes 115 ms forward with YNNPACK and 14 ms without, and the standard model's train step
drops from about 390 ms to about 80 ms. `apply()` therefore adds
`--xla_cpu_experimental_ynn_fusion_type=` (an empty list: no YNNPACK fusions) to XLA_FLAGS.

It does so only when
- the installed jaxlib knows the flag (an unknown flag in XLA_FLAGS aborts the process),
- XLA_FLAGS does not already set it, and
- STIR_JAX_KEEP_XLA_FLAGS is unset (set it to 1 to keep XLA's defaults).
The flag only affects the CPU backend. XLA reads XLA_FLAGS once, when the first backend starts, so
importing stir_jax after running JAX computations leaves the defaults in place; `ynn_conv_active()`
reports what the running process does.
"""
from __future__ import annotations

import importlib.util
import mmap
import os
import pathlib

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


def apply() -> bool:
  """Turns YNNPACK fusions off through XLA_FLAGS where that is safe; True if the flag was added."""
  flags = os.environ.get("XLA_FLAGS", "")
  if os.environ.get("STIR_JAX_KEEP_XLA_FLAGS") or YNN_FLAG in flags:
    return False
  if not _jaxlib_knows(YNN_FLAG):
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
