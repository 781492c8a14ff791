"""HermiteModel / DiscoModel against model_hermite.npz and model_disco.npz."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from stir_jax.models import sesn
from stir_jax.models.sesn import DiscoModel, HermiteModel
from tests.helpers import num_state_params, rel_err

MODELS = {"hermite": HermiteModel, "disco": DiscoModel}


@pytest.fixture(scope="module", params=sorted(MODELS))
def case(request, fixtures_dir):
  with np.load(fixtures_dir / f"model_{request.param}.npz") as f:
    fixture = {k: f[k] for k in f.files}
  model = MODELS[request.param](num_classes=10)
  params = sesn.from_torch(fixture)
  x = jnp.asarray(fixture["x"].transpose(0, 2, 3, 1))
  out = jax.jit(model.apply, static_argnames="with_aux")({"params": params}, x, with_aux=True)
  return model, fixture, out


def test_logits_match_reference(case):
  _, fixture, (logits, _) = case
  assert logits.shape == (4, 10)
  assert rel_err(logits, fixture["logits"]) <= 1e-4


def test_traces_match_reference(case):
  _, fixture, (_, aux) = case
  assert aux["stage1"].shape == (4, 4, 50, 50, 16)
  assert aux["stage2"].shape == (4, 4, 36, 36, 32)
  assert aux["features"].shape == (4, 32)
  assert rel_err(aux["stage1"], fixture["trace_stage1"].transpose(0, 2, 3, 4, 1)) <= 1e-4
  assert rel_err(aux["stage2"], fixture["trace_stage2"].transpose(0, 2, 3, 4, 1)) <= 1e-4
  assert rel_err(aux["features"], fixture["trace_features"]) <= 1e-4


def test_bases_equal_reference_buffers(case):
  model, fixture, _ = case
  basis = model._basis()
  assert basis.shape == (49, 4, 15, 15)
  for layer in ("conv1", "conv2"):
    assert rel_err(basis, fixture[f"{layer}.basis.basis"]) <= 1e-5


def test_init_matches_reference_parameter_layout(case, rng):
  model, fixture, _ = case
  variables = jax.eval_shape(model.init, rng, jnp.zeros((2, 64, 64, 1)))
  assert set(variables) == {"params"}
  assert (jax.tree.map(lambda a: a.shape, variables["params"])
          == jax.tree.map(np.shape, sesn.from_torch(fixture)))
  count = sum(a.size for a in jax.tree.leaves(variables["params"]))
  assert count == num_state_params(fixture) == 16 * 49 + 16 + 32 * 16 * 49 + 32 + 32 * 10 + 10


def test_init_zero_bias_uniform_weight(rng):
  model = HermiteModel(num_classes=3)
  x = jnp.zeros((1, 64, 64, 2))
  params = jax.jit(model.init)(rng, x)["params"]
  np.testing.assert_array_equal(params["conv1"]["bias"], 0.0)
  np.testing.assert_array_equal(params["conv2"]["bias"], 0.0)
  assert params["conv1"]["weight"].shape == (16, 2, 49)
  bound = 1 / np.sqrt(16 * 49)
  assert bound * 0.9 < float(jnp.max(jnp.abs(params["conv2"]["weight"]))) <= bound
