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
