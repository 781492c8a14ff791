"""Moved to `stir_jax.runtime` (the CPU compiler flag); these names stay for old imports.

`apply()` is `stir_jax.runtime.apply_xla_flags()`: call it before JAX starts its backend.
"""
from stir_jax.runtime import YNN_FLAG, _jaxlib_knows, ynn_conv_active
from stir_jax.runtime import apply_xla_flags as apply

__all__ = ["YNN_FLAG", "apply", "ynn_conv_active"]
