"""EnsembleModel against the reference fixture model_ensemble.npz."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from stir_jax.models import ensemble
from stir_jax.models.ensemble import EnsembleModel
from tests.helpers import load_model_fixture, reference_outputs, num_state_params, rel_err


@pytest.fixture(scope="module")
def fixture(fixtures_dir):
  return load_model_fixture(fixtures_dir, "ensemble")


@pytest.fixture(scope="module")
def outputs(fixture):
  return reference_outputs(fixture, "ensemble")


def test_logits_match_reference(fixture, outputs):
  logits, _ = outputs
  assert logits.shape == (4, 10)
  assert rel_err(logits, fixture["logits"]) <= 1e-4


def test_pyramid_and_level_logits_match_reference(fixture, outputs):
  _, aux = outputs
  pyramid = aux["pyramid"]
  assert [p.shape for p in pyramid] == [(4, 64, 64, 1), (4, 32, 32, 1), (4, 16, 16, 1)]
  np.testing.assert_array_equal(pyramid[0], fixture["x"].transpose(0, 2, 3, 1))
  assert rel_err(pyramid[1], fixture["extra_pyramid_1"].transpose(0, 2, 3, 1)) <= 1e-5
  assert rel_err(pyramid[2], fixture["extra_pyramid_2"].transpose(0, 2, 3, 1)) <= 1e-5
  assert aux["level_logits"].shape == (3, 4, 10)
  assert rel_err(aux["level_logits"], fixture["extra_level_logits"]) <= 1e-4
  assert aux["stage1"].shape == (4, 64, 64, 16)
  assert aux["stage2"].shape == (4, 64, 64, 32)
  assert aux["features"].shape == (4, 32)


def test_init_matches_reference_parameter_layout(fixture, rng):
  model = EnsembleModel(num_classes=10)
  variables = jax.eval_shape(model.init, rng, jnp.zeros((2, 64, 64, 1)))
  assert set(variables) == {"params"}
  ours = jax.tree.map(lambda a: a.shape, variables["params"])
  ref = jax.tree.map(np.shape, ensemble.from_torch(fixture))
  assert ours == ref
  count = sum(a.size for a in jax.tree.leaves(variables["params"]))
  assert count == num_state_params(fixture) == 16 * 49 + 16 + 32 * 16 * 49 + 32 + 32 * 10 + 10


def test_init_is_torch_uniform_and_runs_on_colour(rng):
  model = EnsembleModel(num_classes=7)
  x = jax.random.uniform(rng, (2, 64, 64, 3))
  variables = jax.jit(model.init)(rng, x)
  kernel = variables["params"]["body"]["conv2"]["kernel"]
  bound = 1 / np.sqrt(16 * 49)
  assert kernel.shape == (7, 7, 16, 32)
  assert float(jnp.max(jnp.abs(kernel))) <= bound
  assert float(jnp.max(jnp.abs(kernel))) > 0.9 * bound
  assert variables["params"]["body"]["conv1"]["kernel"].shape == (7, 7, 3, 16)
  assert jax.jit(model.apply)(variables, x).shape == (2, 7)
