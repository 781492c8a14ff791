"""Building blocks shared by the models: the model bases, PyTorch-initialised convolutions and the
classifier head.

Every model takes ``impl`` ("auto" | "direct" | "fft", `stir_jax.layers.forms`), ``dtype``
(computation, None: inferred), ``param_dtype`` (float32) and ``precision`` (default "highest") with
flax.linen.Conv's meanings (`stir_jax.layers.dtypes`). The models declare them once, through
`ModelBase` (the STIR models: with num_classes, kernel_size and interpolation) or `MnistBase` (the
MNIST-scale models), and build their layers with `Forwarding.layer`, which hands every layer the
options it declares; `compute_input` casts the images once on entry.
"""
from __future__ import annotations

from typing import Optional, Sequence

import jax
import jax.numpy as jnp
import flax.linen as nn
import numpy as np

from stir_jax.layers import forms
from stir_jax.layers.conv import conv2d
from stir_jax.layers.dtypes import DEFAULT_PRECISION, Dtype, PrecisionLike, canonical_precision
from stir_jax.layers.dtypes import promote_dtype
from stir_jax.layers.initializers import torch_uniform


_FORWARDED = ("impl", "dtype", "param_dtype", "precision")


class Forwarding:
  """Methods of the model bases (no fields): the layer options a model forwards to its layers."""

  #: The forms the model has ("auto" is always accepted); a one-form model lists one.
  impls: Sequence[str] = forms.IMPLS

  def dtypes(self) -> dict:
    """dtype, param_dtype and precision, to hand to a layer."""
    return {"dtype": self.dtype, "param_dtype": self.param_dtype, "precision": self.precision}

  def layer(self, cls, *args, **kwargs) -> nn.Module:
    """``cls(*args, **kwargs)`` with this model's impl, dtype, param_dtype and precision added, each
    where cls declares it and kwargs does not set it."""
    declared = getattr(cls, "__dataclass_fields__", {})
    for key in _FORWARDED:
      if key in declared and key not in kwargs:
        kwargs[key] = getattr(self, key)
    return cls(*args, **kwargs)

  def classify(self, stage2: jax.Array | None, with_aux: bool, pooled: jax.Array | None = None,
               features: jax.Array | None = None, **aux: jax.Array):
    """The paper's head: a global max over every axis but batch and channels of `pooled` (default
    `stage2`), then the dense layer "lin". Returns the logits, or (logits, aux) with aux `stage2`,
    `features` and the maps given as keywords (e.g. stage1, pool1_indices) when `with_aux`.
    `features`: the global max already taken (a model's fused form; stage2 None, no aux)."""
    if features is None:
      features = global_max(stage2 if pooled is None else pooled)
    logits = self.layer(Dense, self.num_classes, name="lin")(features)
    if not with_aux:
      return logits
    return logits, {**aux, "stage2": stage2, "features": features}

  def checked_impl(self) -> str:
    """The model's impl in the canonical vocabulary ("xla": deprecated alias of "direct"); an
    impl the model has no form for is a one-line ValueError."""
    impl = forms.check_impl(self.impl)
    if impl != "auto" and impl not in self.impls:
      raise ValueError(f"{type(self).__name__} has only the {', '.join(self.impls)} form; got "
                       f"impl={impl!r} (valid: auto, {', '.join(self.impls)})")
    return impl


class ModelBase(Forwarding, nn.Module):
  """The fields every STIR model shares (subclasses add their own after these).

  Attributes:
    num_classes: logits per sample.
    kernel_size: the base kernel size.
    interpolation: SiConv kernel interpolation (`stir_jax.layers.interpolation.MODES`); models
      without kernel resizing keep it so every model shares one signature.
    impl: "auto" | "direct" | "fft", handed to every layer with more than one form.
    dtype: computation dtype; None: inferred (float32 for float32 images).
    param_dtype: parameter dtype (float32).
    precision: of every conv and matmul (default "highest"; "default": the backend's).
  """
  num_classes: int
  kernel_size: int = 7
  interpolation: str = "bicubic"
  impl: str = "auto"
  dtype: Optional[Dtype] = None
  param_dtype: Dtype = jnp.float32
  precision: PrecisionLike = DEFAULT_PRECISION


class MnistBase(Forwarding, nn.Module):
  """The fields every MNIST-scale model shares (`stir_jax.models.mnist_scale`): num_classes (10)
  and impl, dtype, param_dtype, precision as `ModelBase`."""
  num_classes: int = 10
  impl: str = "auto"
  dtype: Optional[Dtype] = None
  param_dtype: Dtype = jnp.float32
  precision: PrecisionLike = DEFAULT_PRECISION


class Conv(nn.Module):
  """A 2-D convolution with PyTorch's default initialisation (weights and bias U(+-1/sqrt(fan_in))).

  x (B, H, W, Cin) -> (B, H', W', features); dtype, param_dtype, precision as flax.linen.Conv
  (precision defaults to "highest").
  """
  features: int
  kernel_size: int = 7
  padding: str | int = "VALID"
  use_bias: bool = True
  impl: str = "auto"  # see stir_jax.layers.conv.conv2d
  dtype: Optional[Dtype] = None
  param_dtype: Dtype = jnp.float32
  precision: PrecisionLike = DEFAULT_PRECISION

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    k, cin = self.kernel_size, x.shape[-1]
    init = torch_uniform(cin * k * k)
    kernel = self.param("kernel", init, (k, k, cin, self.features), self.param_dtype)
    bias = (self.param("bias", init, (self.features,), self.param_dtype) if self.use_bias
            else None)
    x, kernel, bias = promote_dtype(x, kernel, bias, dtype=self.dtype)
    return conv2d(x, kernel, bias, self.padding, self.impl, precision=self.precision)


class Dense(nn.Module):
  """A dense layer with PyTorch's default initialisation: x (..., in) -> (..., features).

  dtype, param_dtype, precision as flax.linen.Dense (precision defaults to "highest").
  """
  features: int
  dtype: Optional[Dtype] = None
  param_dtype: Dtype = jnp.float32
  precision: PrecisionLike = DEFAULT_PRECISION

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    init = torch_uniform(x.shape[-1])
    kernel = self.param("kernel", init, (x.shape[-1], self.features), self.param_dtype)
    bias = self.param("bias", init, (self.features,), self.param_dtype)
    x, kernel, bias = promote_dtype(x, kernel, bias, dtype=self.dtype)
    return jnp.dot(x, kernel, precision=canonical_precision(self.precision)) + bias


def compute_input(x: jax.Array, dtype: Optional[Dtype]) -> jax.Array:
  """The images in the computation dtype (unchanged when dtype is None)."""
  return x if dtype is None else jnp.asarray(x, dtype)


def dtype_kwargs(module: nn.Module) -> dict:
  """A model's dtype, param_dtype and precision, to hand to its layers."""
  return {"dtype": module.dtype, "param_dtype": module.param_dtype,
          "precision": module.precision}


def global_max(x: jax.Array) -> jax.Array:
  """Max over every axis but the first (batch) and the last (channels): (B, ..., C) -> (B, C)."""
  return jnp.max(x, axis=tuple(range(1, x.ndim - 1)))


# --- conversion of reference (PyTorch) state dicts -------------------------------------------

def torch_conv(state: dict, name: str, weight_key: str = "weight") -> dict:
  """OIHW conv weight + bias from a reference state dict -> {'kernel': HWIO, 'bias'}."""
  out = {"kernel": np.asarray(state[f"{name}.{weight_key}"]).transpose(2, 3, 1, 0)}
  if f"{name}.bias" in state:
    out["bias"] = np.asarray(state[f"{name}.bias"])
  return out


def torch_dense(state: dict, name: str) -> dict:
  """(out, in) linear weight + bias -> {'kernel': (in, out), 'bias'}."""
  return {"kernel": np.asarray(state[f"{name}.weight"]).T,
          "bias": np.asarray(state[f"{name}.bias"])}
