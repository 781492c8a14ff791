"""The equivariance-error metric against the reference implementation's numbers."""
import numpy as np
import pytest

from stir_jax import metrics


def _hwc(a):
  return np.asarray(a).transpose(1, 2, 0)


def test_bicubic_resize_and_error_match_reference(load_fixture):
  f = load_fixture("metrics_equivariance")
  for ref, other, interp, err in [("ref", "other", "interp", "error"),
                                  ("ref_down", "other_down", "interp_down", "error_down")]:
    ours = metrics.resize_bicubic(_hwc(f[other]), f[ref].shape[1])
    np.testing.assert_allclose(ours, _hwc(f[interp]), rtol=0, atol=1e-5 * np.abs(f[interp]).max())
    assert metrics.equivariance_error(_hwc(f[ref]), _hwc(f[other])) == pytest.approx(
        float(f[err]), rel=1e-5)


def test_crop_rule_matches_reference(load_fixture):
  f = load_fixture("metrics_equivariance")
  crop = metrics.crop_to_object(_hwc(f["crop_activation"]), int(f["crop_scale"]), f["crop_position"])
  np.testing.assert_array_equal(crop, _hwc(f["crop_out"]))


def test_error_of_identical_and_known_maps():
  a = np.random.default_rng(0).random((10, 10, 3))
  assert metrics.equivariance_error(a, a) == 0.0
  # b = 0.5 a at the same size: ||a - b||^2 / ||a||^2 = 0.25 exactly
  assert metrics.equivariance_error(a, 0.5 * a) == pytest.approx(0.25)
  # a constant map survives bicubic resizing (weights sum to one), so the error is 0
  assert metrics.equivariance_error(np.ones((20, 20, 2)), np.ones((13, 13, 2))) == pytest.approx(0, abs=1e-12)


# --- the scale-shifted measure (scale-channel models) -------------------------------------------

def test_scale_axis_shift():
  r = np.sqrt(2)
  got = [metrics.scale_axis_shift(a, b, r) for a, b in metrics.EQUIVARIANCE_PAIRS]
  assert got == [1, -1, 1, -1, 2, -2]
  # a scale axis running from coarse to fine (ratio < 1) shifts the other way
  assert metrics.scale_axis_shift(32, 17, 1 / r) == -2
  assert metrics.scale_axis_shift(32, 17, 2 ** (1 / 3)) == 3  # hermite/disco: 2.74 channels
  assert metrics.scale_axis_shift(64, 49, 2.0) == 0  # dss: 0.39 channels
  for bad in (1.0, 0.0, -2.0):
    with pytest.raises(ValueError, match="scale_ratio"):
      metrics.scale_axis_shift(64, 49, bad)


def test_shifted_error_of_a_known_shifted_stack():
  """ref[s] = other[s - 2] for s >= 2 (ref's channels 0, 1 unrelated): 0 with shift 2 only."""
  rng = np.random.default_rng(0)
  other = rng.random((5, 9, 9, 3))
  ref = np.concatenate([rng.random((2, 9, 9, 3)), other[:3]])
  assert metrics.shifted_equivariance_error(ref, other, 2) == 0.0
  for wrong in (0, 1, -2):
    assert metrics.shifted_equivariance_error(ref, other, wrong) > 0.1
  # shift 0 is the unshifted, flattened measure; no shared channel gives NaN
  flat = metrics.flatten_scale_axis
  assert flat(ref).shape == (9, 9, 15) and np.array_equal(flat(ref)[..., 3:6], ref[1])
  assert metrics.shifted_equivariance_error(ref, other, 0) == metrics.equivariance_error(
      flat(ref), flat(other))
  assert np.isnan(metrics.shifted_equivariance_error(ref, other, 5))


def _shifted_object_maps(num_scales=8, ratio=np.sqrt(2)):
  """Maps (S, 64, 64, 2) of one object at the six sizes whose scale channels are a fixed
  sequence of constant maps shifted by round(log(size / 17) / log ratio): constant maps survive
  the bicubic resize exactly, so only the alignment of the scale axes decides the error."""
  values = np.random.default_rng(1).random((num_scales + 8, 2)) * 4
  maps, pos = {}, {}
  for s in metrics.EQUIVARIANCE_SCALES:
    level = int(round(np.log(s / 17) / np.log(ratio)))
    maps[s] = np.broadcast_to(values[4 - level:4 - level + num_scales, None, None, :],
                              (num_scales, 64, 64, 2))
    pos[s] = (64 - s, (64 - s) // 2)
  return maps, pos


def test_object_errors_with_scale_ratio():
  maps, pos = _shifted_object_maps()
  shifted = metrics.object_equivariance_errors(maps, pos, scale_ratio=np.sqrt(2))
  np.testing.assert_allclose(shifted, 0, atol=1e-12)
  plain = metrics.object_equivariance_errors(maps, pos)
  assert np.all(plain > 0.05), plain
  # the default flattens the scale axis exactly as before (S * C channels, unshifted)
  flat = {s: metrics.flatten_scale_axis(m) for s, m in maps.items()}
  np.testing.assert_array_equal(metrics.object_equivariance_errors(flat, pos), plain)
  with pytest.raises(ValueError, match="scale axis"):
    metrics.object_equivariance_errors(flat, pos, scale_ratio=np.sqrt(2))


def test_pairs_an_object_cannot_be_seen_in_are_nan():
  """A 36-pixel map (two 15x15 layers removed 28 pixels, as SESN's stage 2) keeps no pixels of a
  17-pixel object: the two pairs with size 17 are NaN, the other four are measured."""
  rng = np.random.default_rng(0)
  maps = {s: rng.random((36, 36, 3)) for s in metrics.EQUIVARIANCE_SCALES}
  positions = {s: (0, 0) for s in metrics.EQUIVARIANCE_SCALES}
  errors = metrics.object_equivariance_errors(maps, positions)
  with_17 = [17 in pair for pair in metrics.EQUIVARIANCE_PAIRS]
  assert np.all(np.isnan(errors[with_17])) and np.all(np.isfinite(errors[~np.array(with_17)]))
  stacked = {s: rng.random((4, 36, 36, 3)) for s in metrics.EQUIVARIANCE_SCALES}
  errors = metrics.object_equivariance_errors(stacked, positions, scale_ratio=2 ** (1 / 3))
  assert np.all(np.isnan(errors[with_17])) and np.all(np.isfinite(errors[~np.array(with_17)]))
