"""XuModel against the reference fixture model_xu.npz."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from stir_jax.models import xu
from stir_jax.models.xu import XuModel
from tests.helpers import load_model_fixture, reference_outputs, num_state_params, rel_err


@pytest.fixture(scope="module")
def fixture(fixtures_dir):
  return load_model_fixture(fixtures_dir, "xu")


@pytest.fixture(scope="module")
def outputs(fixture):
  return reference_outputs(fixture, "xu")


def test_logits_and_features_match_reference(fixture, outputs):
  logits, aux = outputs
  assert logits.shape == (4, 10)
  assert rel_err(logits, fixture["logits"]) <= 1e-4
  assert aux["features"].shape == (4, 32)
  assert rel_err(aux["features"], fixture["extra_features"]) <= 1e-4


def test_column_kernels_match_reference(fixture, outputs):
  _, aux = outputs
  assert aux["conv1_kernel"].shape == (11, 11, 1, 80)
  assert aux["conv2_kernel"].shape == (11, 11, 16, 160)
  assert rel_err(aux["conv1_kernel"], fixture["extra_conv1_kernel"].transpose(2, 3, 1, 0)) <= 1e-5
  assert rel_err(aux["conv2_kernel"], fixture["extra_conv2_kernel"].transpose(2, 3, 1, 0)) <= 1e-5




def test_init_matches_reference_parameter_layout(fixture, rng):
  model = XuModel(num_classes=10)
  variables = jax.eval_shape(model.init, rng, jnp.zeros((2, 64, 64, 1)))
  assert set(variables) == {"params"}
  assert (jax.tree.map(lambda a: a.shape, variables["params"])
          == jax.tree.map(np.shape, xu.from_torch(fixture)))
  assert sum(a.size for a in jax.tree.leaves(variables["params"])) == num_state_params(fixture)


def test_colour_input_shapes(rng):
  model = XuModel(num_classes=4)
  x = jnp.zeros((2, 64, 64, 3))
  variables = jax.eval_shape(model.init, rng, x)
  assert variables["params"]["conv1"]["kernel"].shape == (7, 7, 3, 16)
  assert "bias" not in variables["params"]["conv1"]
  logits, aux = jax.eval_shape(lambda v: model.apply(v, x, with_aux=True), variables)
  assert logits.shape == (2, 4)
  assert aux["conv1_kernel"].shape == (11, 11, 3, 80)
