"""SpatialTransformModel against model_spatial_transform(_perturbed).npz."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from stir_jax.models import spatial_transform
from stir_jax.models.spatial_transform import SpatialTransformModel
from tests.helpers import num_state_params, rel_err

FIXTURES = ("model_spatial_transform", "model_spatial_transform_perturbed")


@pytest.fixture(scope="module")
def apply_fn():
  return jax.jit(SpatialTransformModel(num_classes=10).apply, static_argnames="with_aux")


@pytest.fixture(scope="module", params=FIXTURES)
def case(request, fixtures_dir, apply_fn):
  with np.load(fixtures_dir / f"{request.param}.npz") as f:
    fixture = {k: f[k] for k in f.files}
  params = spatial_transform.from_torch(fixture)
  x = jnp.asarray(fixture["x"].transpose(0, 2, 3, 1))
  return request.param, fixture, apply_fn({"params": params}, x, with_aux=True)


def test_logits_match_reference(case):
  _, fixture, (logits, _) = case
  assert logits.shape == (4, 10)
  assert rel_err(logits, fixture["logits"]) <= 1e-4


def test_theta_and_warped_image_match_reference(case):
  name, fixture, (_, aux) = case
  assert aux["theta"].shape == (4, 2, 3)
  assert aux["transformed"].shape == (4, 64, 64, 1)
  np.testing.assert_allclose(aux["theta"], fixture["extra_theta"], rtol=1e-4, atol=1e-6)
  assert rel_err(aux["transformed"], fixture["extra_transformed"].transpose(0, 2, 3, 1)) <= 2e-5
  identity = np.array([[1, 0, 0], [0, 1, 0]], np.float32)
  if name.endswith("perturbed"):
    # The sampling path is really exercised: theta is far from the identity.
    assert np.max(np.abs(fixture["extra_theta"] - identity)) > 0.05
  else:
    np.testing.assert_array_equal(aux["theta"], np.broadcast_to(identity, (4, 2, 3)))
  assert aux["stage1"].shape == (4, 58, 58, 16)
  assert aux["stage2"].shape == (4, 52, 52, 32)
  assert aux["features"].shape == (4, 32)


def test_init_matches_reference_parameter_layout(fixtures_dir, rng):
  with np.load(fixtures_dir / "model_spatial_transform.npz") as f:
    fixture = {k: f[k] for k in f.files}
  model = SpatialTransformModel(num_classes=10)
  variables = jax.eval_shape(model.init, rng, jnp.zeros((2, 64, 64, 1)))
  assert set(variables) == {"params"}
  assert (jax.tree.map(lambda a: a.shape, variables["params"])
          == jax.tree.map(np.shape, spatial_transform.from_torch(fixture)))
  assert sum(a.size for a in jax.tree.leaves(variables["params"])) == num_state_params(fixture)


def test_init_is_identity_warp(rng):
  model = SpatialTransformModel(num_classes=5)
  x = jax.random.uniform(rng, (2, 64, 64, 3))
  variables = jax.jit(model.init)(rng, x)
  fc2 = variables["params"]["localisation"]["fc2"]
  np.testing.assert_array_equal(fc2["kernel"], 0.0)
  np.testing.assert_array_equal(fc2["bias"], [1, 0, 0, 0, 1, 0])
  assert variables["params"]["body"]["conv1"]["kernel"].shape == (7, 7, 3, 16)
  logits, aux = jax.jit(model.apply, static_argnames="with_aux")(variables, x, with_aux=True)
  assert logits.shape == (2, 5)
  np.testing.assert_allclose(aux["transformed"], x, atol=1e-5)


def test_gradients_reach_localisation_net(fixtures_dir):
  with np.load(fixtures_dir / "model_spatial_transform_perturbed.npz") as f:
    fixture = {k: f[k] for k in f.files}
  model = SpatialTransformModel(num_classes=10)
  params = spatial_transform.from_torch(fixture)
  x = jnp.asarray(fixture["x"][:2].transpose(0, 2, 3, 1))

  def loss(params):
    return jnp.sum(model.apply({"params": params}, x) ** 2)

  grads = jax.jit(jax.grad(loss))(params)
  # Through the bilinear sampler into theta and the whole localisation net.
  for layer in ("conv1", "fc1", "fc2"):
    assert float(jnp.max(jnp.abs(grads["localisation"][layer]["kernel"]))) > 0
