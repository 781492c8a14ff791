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

import dataclasses
import importlib
from typing import Any, Callable

import flax.linen as nn
import jax.numpy as jnp

from stir_jax.layers.dtypes import DEFAULT_PRECISION, canonical_dtype, canonical_precision


@dataclasses.dataclass(frozen=True)
class MnistSpec:
  """Where a factory lives: its module, the nn.Module class, and the state-dict converter."""
  module: str
  cls: str
  from_torch: str = "from_torch"

  def load(self) -> tuple[type, Callable[[dict], dict]]:
    mod = importlib.import_module(self.module)
    return getattr(mod, self.cls), getattr(mod, self.from_torch)


_P = "stir_jax.models.mnist_scale."
# factory name (as in the sesn repository and the fixtures' args["factory"]) -> spec
FACTORIES: dict[str, MnistSpec] = {
    "mnist_cnn_28": MnistSpec(_P + "cnn", "MnistCNN"),
    "mnist_ses_scalar_28": MnistSpec(_P + "sesn", "MnistSESScalar"),
    "mnist_ses_vector_28": MnistSpec(_P + "sesn", "MnistSESVector"),
    "mnist_dss_scalar_28": MnistSpec(_P + "dss", "MnistDSSScalar"),
    "mnist_dss_vector_28": MnistSpec(_P + "dss", "MnistDSSVector"),
    "mnist_ss_28": MnistSpec(_P + "ss", "MnistSS"),
    "mnist_sevf_scalar_28": MnistSpec(_P + "sevf", "MnistSEVFScalar"),
    "mnist_sevf_vector_28": MnistSpec(_P + "sevf", "MnistSEVFVector"),
    "mnist_kanazawa_28": MnistSpec(_P + "kanazawa", "MnistKanazawa"),
    "mnist_xu_28": MnistSpec(_P + "xu", "MnistXu"),
}


def factory_names() -> list[str]:
  return list(FACTORIES)


def spec(factory: str) -> MnistSpec:
  if factory not in FACTORIES:
    raise ValueError(f"unknown MNIST-scale model {factory!r}; valid: {', '.join(FACTORIES)}")
  return FACTORIES[factory]


def get_mnist_model(factory: str, *, dtype: Any = None, param_dtype: Any = jnp.float32,
                    precision: Any = DEFAULT_PRECISION, **kwargs: Any) -> nn.Module:
  """The flax module of `factory` (e.g. "mnist_ses_scalar_28"), with dtype/param_dtype/precision
  as every stir_jax model (`stir_jax.models.get_model`)."""
  cls, _ = spec(factory).load()
  return cls(dtype=canonical_dtype(dtype), param_dtype=canonical_dtype(param_dtype),
             precision=canonical_precision(precision), **kwargs)
