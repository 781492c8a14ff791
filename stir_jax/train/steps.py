"""The pure per-device steps. Every path (one device, many, many hosts, many seeds, pmap) runs these
same functions on its own shard of the batch and reduces over the data axis (`axis_name`).

The loss is the cross-entropy summed over the batch's real examples (batch["mask"]) divided by their
global count, so a padded last batch gives the same update as an unpadded smaller one, and a batch
split over devices the same update as on one device.
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import optax

from stir_jax import metrics
from stir_jax.train.state import TrainState


def psum(x, axis_name: str | None):
  """lax.psum over the data axis; identity when the step runs unmapped (axis_name None)."""
  return x if axis_name is None else jax.lax.psum(x, axis_name)


def train_step_fn(model, tx) -> Callable:
  """step(state, batch, axis_name) -> (state, stats): one Adam step on this device's shard.

  batch: image (b, 64, 64, C), label (b,), mask (b,) with b this device's share of the global batch.
  stats: loss_sum, correct, count summed over the whole global batch.
  """

  def step(state: TrainState, batch, axis_name=None) -> tuple[TrainState, dict]:
    mask = batch["mask"].astype(jnp.float32)
    count = jnp.maximum(psum(mask.sum(), axis_name), 1.0)

    def loss_fn(params):
      logits = model.apply({"params": params}, batch["image"]).astype(jnp.float32)
      return jnp.sum(metrics.cross_entropy(logits, batch["label"]) * mask) / count, logits

    (_, logits), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    grads = psum(grads, axis_name)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    stats = psum(metrics.batch_stats(logits, batch["label"], mask=batch["mask"]), axis_name)
    return TrainState(step=state.step + 1, params=params, opt_state=opt_state), stats

  return step


def eval_step_fn(model) -> Callable:
  """step(params, batch, axis_name) -> stats with per-scale sums over the whole global batch."""

  def step(params, batch, axis_name=None):
    logits = model.apply({"params": params}, batch["image"]).astype(jnp.float32)
    return psum(metrics.batch_stats(logits, batch["label"], batch["scale"], batch["mask"]),
                axis_name)

  return step
