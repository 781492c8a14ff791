"""Model registry: every model of the paper (and soft_pool, dss, ss and sevf) by name.

>>> model = get_model("pixel_pool", num_channels=1, num_classes=36)
>>> variables = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 64, 64, 1)))
>>> logits, aux = model.apply(variables, x, with_aux=True)
>>> fast = get_model("pixel_pool", 1, 36, dtype="bfloat16", precision="default")  # mixed precision

Models are flax.linen modules taking channels-last images (batch, 64, 64, channels) in [0, 1].
Every model takes ``dtype`` (computation dtype; None infers it, float32 for float32 images),
``param_dtype`` (float32) and ``precision`` (default "highest": every convolution and matmul in true
float32 on any backend; "default" lets the backend choose), with flax.linen.Conv's meanings; see
`stir_jax.layers.dtypes`. Logits come out in the computation dtype: compute the loss in float32.
"""
from __future__ import annotations

import dataclasses
import importlib
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from stir_jax.layers.dtypes import DEFAULT_PRECISION, canonical_dtype, canonical_precision


@dataclasses.dataclass(frozen=True)
class ModelSpec:
  """Where a model lives: module path, class name, fixed keyword arguments, converter name."""
  module: str
  cls: str
  kwargs: dict = dataclasses.field(default_factory=dict)
  from_torch: str = "from_torch"
  pooling: bool = False  # records scale-pool indices in aux

  def load(self) -> tuple[type, Callable[[dict], dict]]:
    mod = importlib.import_module(self.module)
    return getattr(mod, self.cls), getattr(mod, self.from_torch)


_M = "stir_jax.models."
MODELS: dict[str, ModelSpec] = {
    "standard": ModelSpec(_M + "standard", "StandardCNN"),
    "pixel_pool": ModelSpec(_M + "pooling", "ScalePoolCNN", {"pool": "pixel"}, pooling=True),
    "slice_pool": ModelSpec(_M + "pooling", "ScalePoolCNN", {"pool": "slice"}, pooling=True),
    "energy_pool": ModelSpec(_M + "pooling", "ScalePoolCNN", {"pool": "energy"}, pooling=True),
    "soft_pool": ModelSpec(_M + "pooling", "ScalePoolCNN",
                           {"pool": "soft", "learnable_temperature": True}, pooling=True),
    "conv3d": ModelSpec(_M + "pooling", "Conv3dCNN", from_torch="conv3d_from_torch"),
    "ensemble": ModelSpec(_M + "ensemble", "EnsembleModel"),
    "spatial_transform": ModelSpec(_M + "spatial_transform", "SpatialTransformModel"),
    "xu": ModelSpec(_M + "xu", "XuModel"),
    "kanazawa": ModelSpec(_M + "kanazawa", "KanazawaModel"),
    "hermite": ModelSpec(_M + "sesn", "HermiteModel"),
    "disco": ModelSpec(_M + "sesn", "DiscoModel"),
    # Beyond the paper: the field's other scale-equivariant families in its model pattern.
    "dss": ModelSpec(_M + "dss", "DSSModel"),
    "ss": ModelSpec(_M + "scale_steerable", "ScaleSteerableModel"),
    "sevf": ModelSpec(_M + "sevf", "SEVFModel"),
    "gauss_der": ModelSpec(_M + "gaussian_derivative", "GaussDerModel"),
}


def model_names() -> list[str]:
  return list(MODELS)


def _spec(name: str) -> ModelSpec:
  if name not in MODELS:
    raise ValueError(f"unknown model {name!r}; valid models: {', '.join(MODELS)}")
  return MODELS[name]


def get_model(name: str, num_channels: int, num_classes: int, kernel_size: int = 7,
              interpolation: str = "bicubic", *, dtype: Any = None,
              param_dtype: Any = jnp.float32, precision: Any = DEFAULT_PRECISION,
              **kwargs: Any) -> nn.Module:
  """The flax module for `name`. num_channels is checked at apply time (inferred from x).

  Args:
    name: one of `model_names()`.
    num_channels, num_classes: input channels and logits per sample.
    kernel_size, interpolation: the base kernel size and the SiConv kernel interpolation.
    dtype: computation dtype, a dtype or its name ("float32", "bfloat16", "float16"); None
      (default) infers it from inputs and parameters (float32 for float32 images).
    param_dtype: parameter dtype or its name (default float32).
    precision: of every convolution and matmul: "highest" (default, true float32), "high",
      "default" (the backend's choice), a `jax.lax.Precision`, or None (as "default").
    **kwargs: go to the module (e.g. impl="direct" for the SiConv models).
  """
  spec = _spec(name)
  if num_channels < 1 or num_classes < 2:
    raise ValueError(
        f"need num_channels >= 1 and num_classes >= 2, got {num_channels}, {num_classes}")
  cls, _ = spec.load()
  return cls(num_classes=num_classes, kernel_size=kernel_size, interpolation=interpolation,
             dtype=canonical_dtype(dtype), param_dtype=canonical_dtype(param_dtype),
             precision=canonical_precision(precision), **spec.kwargs, **kwargs)


def is_pooling(name: str) -> bool:
  """Whether the model reports scale-pool indices (pool1_indices, pool2_indices) in aux."""
  return _spec(name).pooling


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
