"""KanazawaModel against the reference fixture model_kanazawa.npz."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from stir_jax.models import kanazawa
from stir_jax.models.kanazawa import KanazawaModel
from tests.helpers import load_model_fixture, reference_outputs, num_state_params, rel_err


@pytest.fixture(scope="module")
def fixture(fixtures_dir):
  return load_model_fixture(fixtures_dir, "kanazawa")


@pytest.fixture(scope="module")
def outputs(fixture):
  return reference_outputs(fixture, "kanazawa")


def test_logits_match_reference(fixture, outputs):
  logits, _ = outputs
  assert logits.shape == (4, 10)
  assert rel_err(logits, fixture["logits"]) <= 1e-4
  assert rel_err(logits, fixture["trace_predictions"]) <= 1e-4


def test_traces_match_reference(fixture, outputs):
  _, aux = outputs
  assert aux["stage1"].shape == (4, 58, 58, 16)
  assert aux["stage2"].shape == (4, 52, 52, 32)
  assert aux["features"].shape == (4, 32)
  assert rel_err(aux["stage1"], fixture["trace_stage1"].transpose(0, 2, 3, 1)) <= 1e-4
  assert rel_err(aux["stage2"], fixture["trace_stage2"].transpose(0, 2, 3, 1)) <= 1e-4
  assert rel_err(aux["features"], fixture["trace_features"]) <= 1e-4




def test_init_matches_reference_parameter_layout(fixture, rng):
  model = KanazawaModel(num_classes=10)
  variables = jax.eval_shape(model.init, rng, jnp.zeros((2, 64, 64, 1)))
  assert set(variables) == {"params"}
  assert (jax.tree.map(lambda a: a.shape, variables["params"])
          == jax.tree.map(np.shape, kanazawa.from_torch(fixture)))
  assert sum(a.size for a in jax.tree.leaves(variables["params"])) == num_state_params(fixture)
