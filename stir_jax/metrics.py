"""Metrics shared by training and evaluation.

Every batch metric is a dict of sums and counts (pure, jit-able, mask-aware), merged by addition and
turned into rates once at the end (`finalize`), so results do not depend on batch size or on how the
data was split across hosts.

>>> stats = batch_stats(logits, labels, scales)            # inside jit
>>> total = merge(total, jax.device_get(stats))             # on the host
>>> finalize(total)["accuracy"]
"""
from __future__ import annotations

from typing import Mapping

import jax
import jax.numpy as jnp
import numpy as np
import optax

MIN_SCALE, MAX_SCALE = 17, 64
SCALES = tuple(range(MIN_SCALE, MAX_SCALE + 1))  # the 48 object sizes of STIR
SCALE_COLUMNS = tuple(f"s{s}" for s in SCALES)


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Per-example softmax cross-entropy. logits (B, K), labels (B,) int -> (B,)."""
  return optax.softmax_cross_entropy_with_integer_labels(logits, labels)


def batch_stats(logits: jax.Array, labels: jax.Array, scales: jax.Array | None = None,
                mask: jax.Array | None = None) -> dict[str, jax.Array]:
  """Sums and counts for one batch.

  Args:
    logits: (B, K). labels: (B,) int. scales: (B,) object sizes 17..64 (per-scale counts are
      added when given). mask: (B,) bool or 0/1, False for padding examples.
  Returns:
    loss_sum, correct, count (scalars) and, with scales, per_scale_correct, per_scale_count and
    per_scale_loss_sum (48,), indexed by object size - 17.
  """
  mask = jnp.ones(labels.shape, jnp.float32) if mask is None else mask.astype(jnp.float32)
  hit = (jnp.argmax(logits, -1) == labels).astype(jnp.float32) * mask
  loss = cross_entropy(logits, labels) * mask
  stats = {
      "loss_sum": jnp.sum(loss),
      "correct": jnp.sum(hit),
      "count": jnp.sum(mask),
  }
  if scales is not None:
    onehot = jax.nn.one_hot(scales - MIN_SCALE, len(SCALES), dtype=jnp.float32)  # (B, 48)
    stats["per_scale_correct"] = hit @ onehot
    stats["per_scale_count"] = mask @ onehot
    stats["per_scale_loss_sum"] = loss @ onehot
  return stats


def merge(total: Mapping[str, np.ndarray] | None, stats: Mapping[str, np.ndarray]) -> dict:
  """Adds two stat dicts (None acts as zero)."""
  stats = {k: np.asarray(v, np.float64) for k, v in stats.items()}
  if total is None:
    return stats
  if total.keys() != stats.keys():
    raise ValueError(f"cannot merge metrics with keys {sorted(total)} and {sorted(stats)}")
  return {k: total[k] + stats[k] for k in total}


def accuracy(correct: float, count: float) -> float:
  """correct / count; NaN when count is 0 (no examples is not 0% accuracy)."""
  return float(correct / count) if count else float("nan")


def per_scale_accuracy(per_scale_correct: np.ndarray, per_scale_count: np.ndarray) -> dict[str, float]:
  """{'s17': acc, ..., 's64': acc}; NaN for a scale without examples."""
  return {col: accuracy(c, n) for col, c, n in zip(SCALE_COLUMNS, per_scale_correct, per_scale_count)}


def restrict(total: Mapping[str, np.ndarray], scales) -> dict:
  """The totals of the examples whose object size is in `scales` (needs per-scale sums)."""
  sel = np.isin(np.asarray(SCALES), np.asarray(list(scales)))
  return {"loss_sum": total["per_scale_loss_sum"][sel].sum(),
          "correct": total["per_scale_correct"][sel].sum(),
          "count": total["per_scale_count"][sel].sum()}


def finalize(total: Mapping[str, np.ndarray]) -> dict:
  """Rates from merged sums: loss, accuracy, count and (if present) per_scale (dict s17..s64)."""
  out = {"loss": accuracy(total["loss_sum"], total["count"]),
         "accuracy": accuracy(total["correct"], total["count"]),
         "count": int(total["count"])}
  if "per_scale_correct" in total:
    out["per_scale"] = per_scale_accuracy(total["per_scale_correct"], total["per_scale_count"])
  return out
