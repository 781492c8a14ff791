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


def zero_stats(per_scale: bool = False) -> dict[str, np.ndarray]:
  """Zero sums with the keys and shapes of `batch_stats` (with or without per-scale sums): the
  start of a running total kept on the devices."""
  out = {"loss_sum": np.zeros((), np.float32), "correct": np.zeros((), np.float32),
         "count": np.zeros((), np.float32)}
  if per_scale:
    for key in ("per_scale_correct", "per_scale_count", "per_scale_loss_sum"):
      out[key] = np.zeros((len(SCALES),), np.float32)
  return out


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


# --- equivariance error (the paper's Sec. IV-C; DESIGN.md §4) ---------------------------------

# (reference size, other size) pairs of object sizes; the other's crop is resized to the reference's.
EQUIVARIANCE_PAIRS = ((64, 49), (49, 64), (48, 33), (33, 48), (32, 17), (17, 32))
EQUIVARIANCE_SCALES = (64, 49, 48, 33, 32, 17)


def crop_to_object(fmap: np.ndarray, scale: int, position, image_size: int = 64) -> np.ndarray:
  """The part of a feature map (H, W, C) that sees the object of size `scale` at `position`.

  position is (x, y) of the object's top-left corner in the image (x = column). The valid
  convolutions removed image_size - H pixels; the crop keeps the reference's rule: rows
  y .. y + scale - (image_size - H), columns likewise.
  """
  pad = image_size - fmap.shape[0]
  side = scale - pad
  if side < 1:
    raise ValueError(f"an object of size {scale} leaves no pixels in a {fmap.shape[0]}-pixel map")
  x, y = int(position[0]), int(position[1])
  return fmap[y:y + side, x:x + side]


def resize_bicubic(fmap: np.ndarray, size: int) -> np.ndarray:
  """PyTorch-style bicubic resize (a = -0.75, half-pixel centres, no antialiasing) of a square
  (H, H, C) map to (size, size, C)."""
  from stir_jax.layers.interpolation import interpolation_matrix
  a = interpolation_matrix(fmap.shape[0], size, "bicubic")
  b = interpolation_matrix(fmap.shape[1], size, "bicubic")
  return np.einsum("ph,hwc,qw->pqc", a, np.asarray(fmap, np.float64), b, optimize=True)


def equivariance_error(ref: np.ndarray, other: np.ndarray) -> float:
  """||ref - resize(other)||^2 / ||ref||^2 with `other` (H', W', C) resized to ref's (H, W, C) size.

  0 for identical maps; NaN when ref is all zero (the ratio is undefined).
  """
  ref = np.asarray(ref, np.float64)
  interp = resize_bicubic(other, ref.shape[0]) if other.shape[:2] != ref.shape[:2] else other
  denom = np.sum(ref ** 2)
  return float(np.sum((ref - interp) ** 2) / denom) if denom > 0 else float("nan")


def object_equivariance_errors(maps: dict[int, np.ndarray], positions: dict[int, tuple],
                               scale_ratio: float | None = None) -> np.ndarray:
  """The six pair errors of one object. maps[s]: feature map (H, W, C) of the image with the
  object at size s, or (S, H, W, C) with a scale axis; positions[s]: its (x, y).
  Returns (6,) in EQUIVARIANCE_PAIRS order; NaN for a pair where an object leaves no pixels of
  its map (the valid convolutions removed more than its size).

  scale_ratio None (the paper's measure): a scale axis is flattened into S * C channels and
  compared unshifted. Otherwise the maps must have a scale axis whose channels are spaced by
  `scale_ratio`, and each pair is compared after `scale_axis_shift` (`shifted_equivariance_error`).
  """
  if scale_ratio is None:
    flat = lambda m: m if m.ndim == 3 else flatten_scale_axis(m)
    crops = {s: _crop_if_seen(flat(maps[s]), s, positions[s]) for s in EQUIVARIANCE_SCALES}
    return np.array([np.nan if crops[r] is None or crops[o] is None
                     else equivariance_error(crops[r], crops[o]) for r, o in EQUIVARIANCE_PAIRS])
  for s in EQUIVARIANCE_SCALES:
    if maps[s].ndim != 4:
      raise ValueError(f"scale_ratio needs (S, H, W, C) maps with a scale axis; the map of size "
                       f"{s} has shape {maps[s].shape}")
  # crop_to_object works on the two leading axes: move the scale axis behind them for the crop
  crops = {s: _crop_if_seen(np.moveaxis(maps[s], 0, 2), s, positions[s])
           for s in EQUIVARIANCE_SCALES}
  crops = {s: None if c is None else np.moveaxis(c, 2, 0) for s, c in crops.items()}
  return np.array([
      np.nan if crops[r] is None or crops[o] is None
      else shifted_equivariance_error(crops[r], crops[o], scale_axis_shift(r, o, scale_ratio))
      for r, o in EQUIVARIANCE_PAIRS])


def _crop_if_seen(fmap: np.ndarray, scale: int, position,
                  image_size: int = 64) -> np.ndarray | None:
  """`crop_to_object`, or None where the valid convolutions' border leaves the object no pixels
  (e.g. a 17-pixel object in the 36-pixel stage-2 map of the SESN models, whose two 15x15 layers
  remove 28): that pair's error is undefined and reported as NaN, which the summaries skip."""
  if scale - (image_size - fmap.shape[0]) < 1:
    return None
  return crop_to_object(fmap, scale, position, image_size)


# --- the same with the scale axis shifted (scale-channel models; not the paper's measure) ------

def flatten_scale_axis(fmap: np.ndarray) -> np.ndarray:
  """(S, H, W, C) -> (H, W, S * C), channel s * C + c holding fmap[s, ..., c]."""
  s, h, w, c = fmap.shape
  return np.moveaxis(fmap, 0, 2).reshape(h, w, s * c)


def scale_axis_shift(scale_ref: float, scale_other: float, scale_ratio: float) -> int:
  """Scale channels by which the object's response moves from size scale_other to scale_ref:
  round(log(scale_ref / scale_other) / log(scale_ratio)).

  scale_ratio is the ratio of the scales of neighbouring scale channels (channel s + 1's over
  channel s's). A larger object is seen by coarser scales, so its response moves towards the
  channel of the larger scale: to higher indices when scale_ratio > 1 (hermite, disco, dss,
  gauss_der; measured on gauss_der in tests/models/test_gaussian_derivative.py), to lower ones
  when the axis runs from coarse to fine (scale_ratio < 1). E.g. ratio sqrt(2) and sizes
  (64, 49): 1; (17, 32): -2.
  """
  if not scale_ratio > 0 or scale_ratio == 1:
    raise ValueError(f"scale_ratio must be positive and not 1, got {scale_ratio}")
  return int(round(np.log(scale_ref / scale_other) / np.log(scale_ratio)))


def shifted_equivariance_error(ref: np.ndarray, other: np.ndarray, shift: int) -> float:
  """`equivariance_error` of two (S, H, W, C) maps after aligning their scale axes: ref[s] is
  compared with other[s - shift], for the scale channels s present in both, which are flattened
  to channels as `flatten_scale_axis` does. shift 0 equals the unshifted measure.

  NaN when no channel is shared (|shift| >= S) or the shared part of ref is all zero.
  """
  num = ref.shape[0]
  if other.shape[0] != num:
    raise ValueError(f"scale axes differ: {ref.shape} and {other.shape}")
  if abs(shift) >= num:
    return float("nan")
  lo, hi = max(0, shift), min(num, num + shift)  # ref channels lo..hi-1 <-> other lo-shift..
  return equivariance_error(flatten_scale_axis(ref[lo:hi]),
                            flatten_scale_axis(other[lo - shift:hi - shift]))
