"""Moved to `stir_jax.runtime` (tcmalloc for the entry points); these names stay for old imports.

Use `stir_jax.runtime`: `runtime.prepare()` / `runtime.use_tcmalloc()` in an entry point,
`runtime.malloc_name()` to record the malloc a process runs on.
"""
from stir_jax.runtime import OPT_OUT, find_tcmalloc, loaded, preload_environment
from stir_jax.runtime import undecided_environment, use_tcmalloc

__all__ = ["OPT_OUT", "find_tcmalloc", "loaded", "preload_environment", "undecided_environment",
           "use_tcmalloc"]
