"""The pure per-device steps. Every path (one device, many, many hosts, many seeds, pmap) runs these
same functions on its own shard of the batch and reduces over the data axis (`axis_name`).

The loss is the cross-entropy summed over the batch's real examples (batch["mask"]) divided by their
global count, so a padded last batch gives the same update as an unpadded smaller one, and a batch
split over devices the same update as on one device. Models with a train mode (batch norm and
dropout: the MNIST-scale family) train inside `global_batch.global_batch_layers`, which keeps that
property for their batch statistics and dropout masks.
"""
from __future__ import annotations

from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import optax

from stir_jax import metrics
from stir_jax.train.global_batch import global_batch_layers
from stir_jax.train.state import TrainState


def psum(x, axis_name: str | None):
  """lax.psum over the data axis; identity when the step runs unmapped (axis_name None)."""
  return x if axis_name is None else jax.lax.psum(x, axis_name)


def normalize(image: jax.Array, input_norm: Sequence[float] | None) -> jax.Array:
  """(image - mean) / std for input_norm = (mean, std); unchanged for None."""
  if input_norm is None:
    return image
  mean, std = input_norm
  return (image - mean) / std


def train_step_fn(model, tx, *, train_mode: bool = False,
                  input_norm: Sequence[float] | None = None) -> Callable:
  """step(state, batch, axis_name) -> (state, stats): one optimiser step on this device's shard.

  batch: image (b, H, W, C), label (b,), mask (b,) with b this device's share of the global batch.
  stats: loss_sum, correct, count summed over the whole global batch.
  train_mode: call the model as ``apply({"params", "batch_stats"}, x, train=True,
    mutable=["batch_stats"], rngs={"dropout": fold_in(state.rng, state.step)})`` and keep the
    updated batch_stats (see `global_batch`); otherwise ``apply({"params"}, x)``.
  input_norm: (mean, std) applied to the images first (None: none).
  """

  def step(state: TrainState, batch, axis_name=None) -> tuple[TrainState, dict]:
    mask = batch["mask"].astype(jnp.float32)
    count = jnp.maximum(psum(mask.sum(), axis_name), 1.0)
    image = normalize(batch["image"], input_norm)

    def loss_fn(params):
      if train_mode:
        with global_batch_layers(batch["mask"], axis_name):
          logits, updates = model.apply(
              {"params": params, "batch_stats": state.batch_stats}, image, train=True,
              mutable=["batch_stats"], rngs={"dropout": jax.random.fold_in(state.rng, state.step)})
        batch_stats = updates.get("batch_stats", state.batch_stats)
      else:
        logits, batch_stats = model.apply({"params": params}, image), state.batch_stats
      logits = logits.astype(jnp.float32)
      loss = jnp.sum(metrics.cross_entropy(logits, batch["label"]) * mask) / count
      return loss, (logits, batch_stats)

    (_, (logits, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    grads = psum(grads, axis_name)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    stats = psum(metrics.batch_stats(logits, batch["label"], mask=batch["mask"]), axis_name)
    return state.replace(step=state.step + 1, params=params, opt_state=opt_state,
                         batch_stats=batch_stats), stats

  return step


def eval_step_fn(model, *, with_batch_stats: bool = False,
                 input_norm: Sequence[float] | None = None) -> Callable:
  """step(params, batch, axis_name) -> stats over the whole global batch (eval mode).

  With `with_batch_stats` the first argument is the variables {"params", "batch_stats"} instead
  of the params. Per-scale sums (STIR object sizes) are added when the batch has a "scale".
  """

  def step(params, batch, axis_name=None):
    variables = params if with_batch_stats else {"params": params}
    logits = model.apply(variables, normalize(batch["image"], input_norm)).astype(jnp.float32)
    return psum(metrics.batch_stats(logits, batch["label"], batch.get("scale"), batch["mask"]),
                axis_name)

  return step
