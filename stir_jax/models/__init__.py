"""Every model by name (the registry: `stir_jax.models.registry`), and the functions to build them.

>>> model = get_model("pixel_pool", num_channels=1, num_classes=36)
>>> variables = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 64, 64, 1)))
>>> logits, aux = model.apply(variables, x, with_aux=True)
>>> fast = get_model("pixel_pool", 1, 36, dtype="bfloat16", precision="default")  # mixed precision

Models are flax.linen modules taking channels-last images (batch, 64, 64, channels) in [0, 1].
Every model takes ``dtype`` (computation dtype; None infers it, float32 for float32 images),
``param_dtype`` (float32) and ``precision`` (default "highest": every convolution and matmul in true
float32 on any backend; "default" lets the backend choose), with flax.linen.Conv's meanings; see
`stir_jax.layers.dtypes`. Logits come out in the computation dtype: compute the loss in float32.

Names: the paper's eleven models, soft_pool, the field's families (dss, ss, sevf, gauss_der), the
ten MNIST-scale models, and any "package.module:Name" of your own (see `registry`).
"""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from stir_jax.layers.dtypes import DEFAULT_PRECISION
from stir_jax.models.registry import REGISTRY, ModelSpec, build, lookup, names, register

MODELS = REGISTRY  # name -> ModelSpec, every kind

__all__ = ["MODELS", "REGISTRY", "ModelSpec", "build", "lookup", "names", "register",
           "model_names", "get_model", "is_pooling", "check_params"]


def model_names() -> list[str]:
  """The registered STIR models (built-in and registered ones)."""
  return names("stir")


def get_model(name: str, num_channels: int, num_classes: int, kernel_size: int = 7,
              interpolation: str = "bicubic", *, dtype: Any = None,
              param_dtype: Any = jnp.float32, precision: Any = DEFAULT_PRECISION,
              **kwargs: Any) -> nn.Module:
  """The flax module for `name`. num_channels is checked at apply time (inferred from x).

  Args:
    name: a registered name (`names(None)`) or "package.module:Name".
    num_channels, num_classes: input channels and logits per sample.
    kernel_size, interpolation: the base kernel size and the SiConv kernel interpolation.
    dtype: computation dtype, a dtype or its name ("float32", "bfloat16", "float16"); None
      (default) infers it from inputs and parameters (float32 for float32 images).
    param_dtype: parameter dtype or its name (default float32).
    precision: of every convolution and matmul: "highest" (default), "high", "default" (the
      backend's choice), a `jax.lax.Precision`, or None (as "default"); see docs/precision.md.
    **kwargs: go to the module (e.g. impl="direct").
  """
  return build(name, num_channels=num_channels, num_classes=num_classes, kernel_size=kernel_size,
               interpolation=interpolation, dtype=dtype, param_dtype=param_dtype,
               precision=precision, **kwargs)


def is_pooling(name: str) -> bool:
  """Whether the model reports scale-pool indices (pool1_indices, pool2_indices) in aux."""
  return lookup(name).pooling


def check_params(expected, params) -> None:
  """Raises ValueError naming the first parameter of `expected` (a tree of arrays or shape
  structs) that `params` lacks or holds with another shape."""
  got = {jax.tree_util.keystr(p): tuple(l.shape)
         for p, l in jax.tree_util.tree_flatten_with_path(params)[0]}
  for path, leaf in jax.tree_util.tree_flatten_with_path(expected)[0]:
    key = jax.tree_util.keystr(path)
    if key not in got:
      raise ValueError(f"no value for parameter {key}")
    if got[key] != tuple(leaf.shape):
      raise ValueError(f"parameter {key} has shape {got[key]}, expected {tuple(leaf.shape)}")
