"""SESN Hermite and DISCO bases against hermite_basis.npz / disco_basis.npz."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from stir_jax.layers import sesn_basis
from tests.helpers import rel_err


@pytest.fixture(scope="module")
def hermite_fixture(fixtures_dir):
  with np.load(fixtures_dir / "hermite_basis.npz") as f:
    return {k: f[k] for k in f.files}


@pytest.fixture(scope="module")
def disco_fixture(fixtures_dir):
  with np.load(fixtures_dir / "disco_basis.npz") as f:
    return {k: f[k] for k in f.files}


def test_hermite_polynomials():
  t = np.linspace(-3, 3, 13)
  for order in range(6):
    coeff = [0] * order + [1]
    np.testing.assert_allclose(sesn_basis._hermite_e(t, order),
                               np.polynomial.hermite_e.hermeval(t, coeff), atol=1e-9)


def test_hermite_basis_matches_reference(hermite_fixture):
  f = hermite_fixture
  basis = sesn_basis.hermite_basis(int(f["size"]), tuple(f["scales"]), int(f["effective_size"]),
                                   float(f["basis_mult"]), int(f["basis_max_order"]))
  assert basis.shape == (49, 4, 15, 15) and basis.dtype == np.float32
  assert rel_err(basis, f["basis"]) <= 1e-5
  assert rel_err(sesn_basis.hermite_basis_unnormalized(), f["basis_unnormalized"]) <= 1e-5


def test_hermite_basis_supports_and_normalisation():
  basis = sesn_basis.hermite_basis_unnormalized()
  # Supports 7, 9, 11, 15: scale s is zero outside its centred support.
  for s, support in enumerate((7, 9, 11, 15)):
    pad = (15 - support) // 2
    mask = np.ones((15, 15), bool)
    mask[pad:15 - pad, pad:15 - pad] = False
    assert np.all(basis[:, s][:, mask] == 0)
    assert np.any(basis[:, s, pad, :] != 0)
  normed = sesn_basis.hermite_basis()
  np.testing.assert_allclose(np.sqrt((normed[:, 0]**2).sum((1, 2))), 1.0, rtol=1e-6)
  assert np.max(np.abs(np.sqrt((normed[:, 3]**2).sum((1, 2))) - 1)) > 0.1


def test_disco_mixing_functions_match_reference(disco_fixture):
  f = disco_fixture
  w = sesn_basis.hermite_varying_sigma(7, float(f["basis_min_scale"]), int(f["basis_max_order"]),
                                       float(f["basis_mult"]), 49)
  assert rel_err(w, f["W"]) <= 1e-5


def test_disco_basis_matches_reference(disco_fixture, fixtures_dir):
  np.testing.assert_array_equal(sesn_basis.load_disco_raw(), disco_fixture["raw"])
  basis = sesn_basis.disco_basis()
  assert basis.shape == (49, 4, 15, 15) and basis.dtype == np.float32
  assert rel_err(basis, disco_fixture["basis"]) <= 1e-5
  with np.load(fixtures_dir / "model_disco.npz") as f:
    assert rel_err(basis, f["conv1.basis.basis"]) <= 1e-5


def test_disco_basis_rejects_unshipped_configuration():
  with pytest.raises(ValueError):
    sesn_basis.disco_basis(size=11, effective_size=5)
  with pytest.raises(ValueError):
    sesn_basis.disco_basis(scales=(1.0, 1.5, 2.0))


def test_integer_scales_of_raw_are_dilated_deltas(disco_fixture):
  raw = disco_fixture["raw"]
  np.testing.assert_array_equal(sesn_basis.dilated_standard_basis(15, 7, 1), raw[:, 0])
  np.testing.assert_array_equal(sesn_basis.dilated_standard_basis(15, 7, 2), raw[:, 3])


def test_bicubic_scale_matrix_rows():
  mat = sesn_basis.bicubic_scale_matrix(40, 1 / 1.26)
  assert mat.shape == (31, 40)
  np.testing.assert_allclose(mat.sum(1), 1.0, atol=1e-12)
  # Downscaling by exactly 2 samples half-way between pixels: taps -1/16*(a-term) symmetric.
  half = sesn_basis.bicubic_scale_matrix(8, 0.5)
  np.testing.assert_allclose(half[1, 1:5], [-0.09375, 0.59375, 0.59375, -0.09375])


@pytest.fixture(scope="module")
def computed_raw():
  return sesn_basis.compute_disco_raw()


def test_computed_raw_is_close_to_shipped(computed_raw, disco_fixture):
  raw = disco_fixture["raw"]
  assert computed_raw.shape == raw.shape
  np.testing.assert_array_equal(computed_raw[:, [0, 3]], raw[:, [0, 3]])
  for s in (1, 2):
    err = np.linalg.norm(computed_raw[:, s] - raw[:, s]) / np.linalg.norm(raw[:, s])
    assert err < 0.03, (s, err)
  basis = sesn_basis.disco_basis_from_raw(computed_raw)
  assert rel_err(basis, disco_fixture["basis"]) < 5e-3


def test_computed_raw_is_as_equivariant_as_shipped(computed_raw, disco_fixture):
  key = jax.random.PRNGKey(7)
  images = jax.random.uniform(key, (2, 64, 64))
  shipped = jnp.asarray(disco_fixture["raw"])
  noisy = shipped.at[:, 1:3].set(jax.random.normal(key, shipped[:, 1:3].shape))
  loss = jax.jit(jax.vmap(sesn_basis.disco_equivariance_loss, (0, None, None)), static_argnums=2)
  ours, ref, rand = map(float, loss(jnp.stack([jnp.asarray(computed_raw), shipped, noisy]), images,
                                    sesn_basis.DISCO_SCALES))
  assert ours <= 1.01 * ref, (ours, ref)
  assert ref < 0.1 * rand, (ref, rand)


def test_pair_gram_matches_sampled_residuals():
  """The closed-form expected Gram equals the mean squared residual over random images."""
  size, n, ratio = 5, 24, 1.26
  rng = np.random.default_rng(0)
  small, big = rng.normal(size=(2, size, size))  # kernels at scale 1 and scale `ratio`
  z = np.concatenate([big.ravel(), -small.ravel()])
  expected = z @ sesn_basis.disco_pair_gram(n, ratio, size) @ z
  images = jnp.asarray(rng.random((400, n, n)), jnp.float32)
  kernels = jnp.asarray(np.stack([small, big])[None], jnp.float32)  # (F=1, S=2, size, size)
  loss = float(jax.jit(sesn_basis.disco_equivariance_loss, static_argnums=2)(
      kernels, images, (1.0, ratio)))
  np.testing.assert_allclose(loss**2 / len(images), expected, rtol=0.05)
