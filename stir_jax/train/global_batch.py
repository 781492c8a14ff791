"""Train-mode batch norm and dropout over the *global* batch, whatever the number of devices.

A model with batch norm and dropout (the MNIST-scale family: ``model.apply(variables, x,
train=True, mutable=["batch_stats"], rngs={"dropout": key})``) is written for one device and one
whole batch. Under the engine each device holds only its shard of the global batch, and the last
batch of an epoch is padded (batch["mask"]). Inside `global_batch_layers(mask, axis_name)` every
`flax.linen.BatchNorm` and `flax.linen.Dropout` the model calls in train mode is computed as for the
real examples of the whole global batch on one device:

* BatchNorm: mean and variance over the real examples of the global batch (and every non-feature
  axis): masked sums, psum'd over the data axis (sync batch norm); the running statistics are
  updated as PyTorch does (momentum 0.1, the *unbiased* variance), identically on every device.
  Gradients flow through the statistics, as in PyTorch's train mode.
* Dropout: example j of the global batch draws its mask from ``fold_in(key, j)``, with ``key`` the
  layer's ``make_rng("dropout")`` (the same on every device: the step folds the state's key with
  the step number); so the masks do not depend on how the batch is split over devices.

So 1 device and N devices (or N hosts) compute the same step up to the order of floating-point
sums. The models stay unaware of all this: the layers are intercepted (`nn.intercept_methods`),
not rewritten. Eval mode (running statistics, no dropout) is left alone. The batch axis is axis 0
of every intercepted input (a model that folds another axis into it gets a clear error).

>>> with global_batch_layers(batch["mask"], "data"):
...   logits, updates = model.apply(variables, x, train=True, mutable=["batch_stats"],
...                                 rngs={"dropout": key})
"""
from __future__ import annotations

import contextlib
import inspect
from typing import Iterator

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from stir_jax.layers.dtypes import promote_dtype


def _psum(x, axis_name):
  return x if axis_name is None else jax.lax.psum(x, axis_name)


def global_index(local_batch: int, axis_name: str | None) -> jax.Array:
  """(local_batch,) positions of this device's examples in the global batch: device i of the data
  axis holds [i * b, (i + 1) * b) (the engine's batch layout)."""
  offset = 0 if axis_name is None else jax.lax.axis_index(axis_name) * local_batch
  return offset + jnp.arange(local_batch)


def _bind(method, args, kwargs) -> dict:
  """A layer call's arguments by name (self excluded)."""
  bound = inspect.signature(method).bind(None, *args, **kwargs)
  bound.apply_defaults()
  return dict(list(bound.arguments.items())[1:])


def _check_batch_axis(what: str, x: jax.Array, batch: int) -> None:
  if x.ndim == 0 or x.shape[0] != batch:
    raise ValueError(f"{what} input {x.shape}: axis 0 is not the batch of {batch} examples; "
                     "stir_jax.train.global_batch needs the batch on axis 0")


def batch_norm(bn: nn.BatchNorm, x: jax.Array, mask: jax.Array, axis_name: str | None
               ) -> jax.Array:
  """``bn(x)`` in train mode with statistics over the real examples of the global batch.

  Runs inside bn's compact scope (from an interceptor): declares or reuses its ``mean``/``var``
  variables and ``scale``/``bias`` parameters exactly as flax.linen.BatchNorm does.
  """
  if bn.axis_index_groups is not None:
    raise ValueError("global_batch: BatchNorm with axis_index_groups is not supported")
  _check_batch_axis(f"BatchNorm {bn.name}", x, mask.shape[0])
  feature_axes = tuple(a % x.ndim for a in np.atleast_1d(bn.axis))
  reduce = tuple(a for a in range(x.ndim) if a not in feature_axes)
  feature_shape = tuple(x.shape[a] for a in feature_axes)
  keep = lambda v: jnp.reshape(v, tuple(x.shape[a] if a in feature_axes else 1
                                        for a in range(x.ndim)))
  stats_dtype = jnp.promote_types(x.dtype, jnp.float32)
  xf = x.astype(stats_dtype)
  w = mask.astype(stats_dtype).reshape((-1,) + (1,) * (x.ndim - 1))
  per_example = np.prod([x.shape[a] for a in reduce if a != 0], dtype=np.int64)
  count = _psum(jnp.sum(w) * per_example, axis_name)
  mean = _psum(jnp.sum(xf * w, axis=reduce), axis_name) / count
  centred = xf - keep(mean)
  var = _psum(jnp.sum(jnp.square(centred) * w, axis=reduce), axis_name) / count

  ra_mean = bn.variable("batch_stats", "mean", lambda s: jnp.zeros(s, jnp.float32), feature_shape)
  ra_var = bn.variable("batch_stats", "var", lambda s: jnp.ones(s, jnp.float32), feature_shape)
  if not bn.is_initializing():
    m = bn.momentum
    unbiased = var * (count / jnp.maximum(count - 1, 1))  # PyTorch's running_var update
    ra_mean.value = m * ra_mean.value + (1 - m) * jax.lax.stop_gradient(mean)
    ra_var.value = m * ra_var.value + (1 - m) * jax.lax.stop_gradient(unbiased)

  y = centred * keep(jax.lax.rsqrt(var + bn.epsilon))
  args = [x]
  if bn.use_scale:
    scale = bn.param("scale", bn.scale_init, feature_shape, bn.param_dtype)
    y = y * keep(scale)
    args.append(scale)
  if bn.use_bias:
    bias = bn.param("bias", bn.bias_init, feature_shape, bn.param_dtype)
    y = y + keep(bias)
    args.append(bias)
  dtype = promote_dtype(*args, dtype=bn.dtype)[0].dtype
  return y.astype(dtype)


def dropout(layer: nn.Dropout, x: jax.Array, rng: jax.Array | None, index: jax.Array
            ) -> jax.Array:
  """``layer(x)`` in train mode with one mask per global example: fold_in(key, index[j])."""
  rate = layer.rate
  if rate == 0.0:
    return x
  if rate == 1.0:
    return jnp.zeros_like(x)
  _check_batch_axis(f"Dropout {layer.name}", x, index.shape[0])
  dims = tuple(d % x.ndim for d in layer.broadcast_dims)
  if 0 in dims:
    raise ValueError("global_batch: Dropout broadcast over the batch axis is not supported")
  key = layer.make_rng(layer.rng_collection) if rng is None else rng
  shape = tuple(1 if a in dims else x.shape[a] for a in range(1, x.ndim))
  keep = 1.0 - rate
  masks = jax.vmap(lambda j: jax.random.bernoulli(jax.random.fold_in(key, j), keep, shape))(index)
  masks = jnp.broadcast_to(masks, x.shape)
  return jax.lax.select(masks, x / keep, jnp.zeros_like(x))


@contextlib.contextmanager
def global_batch_layers(mask: jax.Array, axis_name: str | None) -> Iterator[None]:
  """Within it, train-mode BatchNorm and Dropout calls use the global batch (module docstring).

  Args:
    mask: (b,) this device's real examples (False: padding), b its share of the global batch.
    axis_name: the data axis the global batch is split over (None: one device, unmapped).
  """
  index = global_index(mask.shape[0], axis_name)

  def intercept(next_fun, args, kwargs, context):
    layer = context.module
    if context.method_name != "__call__":
      return next_fun(*args, **kwargs)
    if isinstance(layer, nn.BatchNorm):
      call = _bind(nn.BatchNorm.__call__, args, kwargs)
      running = nn.merge_param("use_running_average", layer.use_running_average,
                               call["use_running_average"])
      if running or layer.is_initializing():
        return next_fun(*args, **kwargs)
      if call.get("mask") is not None:
        raise ValueError("global_batch: BatchNorm called with its own mask is not supported")
      return batch_norm(layer, call["x"], mask, axis_name)
    if isinstance(layer, nn.Dropout):
      call = _bind(nn.Dropout.__call__, args, kwargs)
      if nn.merge_param("deterministic", layer.deterministic, call["deterministic"]):
        return next_fun(*args, **kwargs)
      return dropout(layer, call["inputs"], call["rng"], index)
    return next_fun(*args, **kwargs)

  with nn.intercept_methods(intercept):
    yield
