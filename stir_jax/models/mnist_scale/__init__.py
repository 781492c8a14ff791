"""The ten MNIST-scale models of the SESN authors' repository (ISosnovik/sesn, `models/mnist_*.py`).

Each model takes channels-last ``(B, 28, 28, 1)`` images (normalised as the benchmark does: mean
0.0607, std 0.2161) and returns ``(B, 10)`` logits. ``module.apply(variables, x)`` is eval mode
(batch norm with its running statistics, no dropout); ``module.apply(variables, x, train=True,
mutable=["batch_stats"], rngs={"dropout": key})`` is train mode. Variables are ``{"params",
"batch_stats"}``.

>>> module, variables = stir_jax.convert.from_sesn_model("mnist_ses_scalar_28", state_dict)
>>> logits = module.apply(variables, x)                  # x (B, 28, 28, 1)
>>> module = get_mnist_model("mnist_ses_scalar_28", dtype="bfloat16")
"""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from stir_jax.layers.dtypes import DEFAULT_PRECISION
from stir_jax.models import registry


def factory_names() -> list[str]:
  """The MNIST-scale models of the registry (the sesn repository's factory names)."""
  return registry.names("mnist_scale")


def spec(factory: str) -> registry.ModelSpec:
  found = registry.REGISTRY.get(factory)
  if found is None or found.kind != "mnist_scale":
    raise ValueError(f"unknown MNIST-scale model {factory!r}; valid: {', '.join(factory_names())}")
  return found


def get_mnist_model(factory: str, *, dtype: Any = None, param_dtype: Any = jnp.float32,
                    precision: Any = DEFAULT_PRECISION, **kwargs: Any) -> nn.Module:
  """The flax module of `factory` (e.g. "mnist_ses_scalar_28"), with dtype/param_dtype/precision
  as every stir_jax model (`stir_jax.models.get_model`)."""
  spec(factory)
  return registry.build(factory, num_channels=1, num_classes=10, dtype=dtype,
                        param_dtype=param_dtype, precision=precision, **kwargs)
