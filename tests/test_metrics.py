"""Metrics on hand-made inputs with known answers."""
import math

import jax.numpy as jnp
import numpy as np
import pytest

from stir_jax import metrics


def _logits_for(preds, num_classes=3):
  return jnp.asarray(np.eye(num_classes)[preds] * 5.0, jnp.float32)


def test_accuracy_and_per_scale_counts():
  labels = jnp.array([0, 1, 2, 0])
  preds = np.array([0, 1, 0, 1])  # right, right, wrong, wrong
  scales = jnp.array([17, 17, 64, 40])
  stats = metrics.batch_stats(_logits_for(preds), labels, scales)
  out = metrics.finalize(metrics.merge(None, stats))
  assert out["accuracy"] == 0.5 and out["count"] == 4
  assert out["per_scale"]["s17"] == 1.0
  assert out["per_scale"]["s64"] == 0.0
  assert out["per_scale"]["s40"] == 0.0
  assert math.isnan(out["per_scale"]["s18"])  # no examples: NaN, not 0
  assert list(out["per_scale"]) == [f"s{s}" for s in range(17, 65)]


def test_mask_excludes_padding_and_merge_adds():
  labels = jnp.array([0, 1, 2, 2])
  logits = _logits_for(np.array([0, 0, 2, 2]))
  mask = jnp.array([True, True, True, False])
  a = metrics.merge(None, metrics.batch_stats(logits, labels, jnp.array([20, 20, 21, 21]), mask))
  assert a["count"] == 3 and a["correct"] == 2
  both = metrics.merge(a, a)
  assert both["count"] == 6
  assert metrics.finalize(both)["accuracy"] == pytest.approx(2 / 3)
  # the masked example contributes nothing to the loss either
  ce = metrics.cross_entropy(logits, labels)
  assert a["loss_sum"] == pytest.approx(float(ce[:3].sum()), rel=1e-6)


def test_restrict_to_scales_matches_direct_computation():
  rng = np.random.default_rng(0)
  labels = rng.integers(0, 3, 200)
  logits = rng.normal(size=(200, 3)).astype(np.float32)
  scales = rng.integers(17, 65, 200)
  total = metrics.merge(None, metrics.batch_stats(jnp.asarray(logits), jnp.asarray(labels),
                                                  jnp.asarray(scales)))
  keep = (scales >= 33) & (scales <= 48)
  sub = metrics.finalize(metrics.restrict(total, range(33, 49)))
  assert sub["count"] == keep.sum()
  assert sub["accuracy"] == pytest.approx((logits.argmax(1) == labels)[keep].mean())
  ce = np.asarray(metrics.cross_entropy(jnp.asarray(logits), jnp.asarray(labels)))
  assert sub["loss"] == pytest.approx(ce[keep].mean(), rel=1e-5)


def test_empty_split_is_nan_not_zero():
  assert math.isnan(metrics.accuracy(0, 0))


def test_prediction_consistency_and_index_correlation_known_answers():
  from stir_jax.eval import evaluation
  # 3 sizes x 2 objects: object 0 always class 1, object 1 changes its mind
  pred = np.array([[[1], [0]], [[1], [2]], [[1], [0]]])
  assert evaluation.prediction_consistency(pred) == 0.5
  scales = np.broadcast_to(np.array([17, 40, 64])[:, None, None], (3, 2, 1))
  rising = np.broadcast_to(np.array([0, 5, 9])[:, None, None, None], (3, 2, 1, 4))
  assert evaluation.index_size_correlation(rising, scales) == pytest.approx(1.0)
  assert evaluation.index_size_correlation(rising[::-1], scales) == pytest.approx(-1.0)
  assert math.isnan(evaluation.index_size_correlation(np.zeros((3, 2, 1, 4)), scales))


def test_index_correlation_ignores_channels_that_chose_nothing():
  from stir_jax.eval import evaluation
  scales = np.broadcast_to(np.array([17, 40, 64])[:, None, None], (3, 1, 1))
  idx = np.array([0, 5, 9])[:, None, None, None] * np.ones((3, 1, 1, 2), int)
  idx[:, 0, 0, 1] = -1                                   # a silent channel
  assert evaluation.index_size_correlation(idx, scales) == pytest.approx(1.0)
