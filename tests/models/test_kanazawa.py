"""KanazawaModel against the reference fixture model_kanazawa.npz."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from stir_jax.layers.resample import scaled_size
from stir_jax.models import kanazawa
from stir_jax.models.kanazawa import SCALES, KanazawaModel
from tests.helpers import num_state_params, rel_err


@pytest.fixture(scope="module")
def fixture(fixtures_dir):
  with np.load(fixtures_dir / "model_kanazawa.npz") as f:
    return {k: f[k] for k in f.files}


@pytest.fixture(scope="module")
def outputs(fixture):
  model = KanazawaModel(num_classes=10)
  params = kanazawa.from_torch(fixture)
  x = jnp.asarray(fixture["x"].transpose(0, 2, 3, 1))
  return jax.jit(model.apply, static_argnames="with_aux")({"params": params}, x, with_aux=True)


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


def test_rescaled_sizes():
  assert [scaled_size(64, s) for s in SCALES] == [40, 50, 64, 80, 101, 128]
  assert [scaled_size(58, 1 / s) for s in SCALES] == [92, 73, 58, 46, 36, 28]
  assert [scaled_size(58, s) for s in SCALES] == [36, 46, 58, 73, 92, 116]
  assert [scaled_size(52, 1 / s) for s in SCALES] == [82, 65, 52, 41, 32, 25]


def test_init_matches_reference_parameter_layout(fixture, rng):
  model = KanazawaModel(num_classes=10)
  variables = jax.eval_shape(model.init, rng, jnp.zeros((2, 64, 64, 1)))
  assert set(variables) == {"params"}
  assert (jax.tree.map(lambda a: a.shape, variables["params"])
          == jax.tree.map(np.shape, kanazawa.from_torch(fixture)))
  assert sum(a.size for a in jax.tree.leaves(variables["params"])) == num_state_params(fixture)


def test_windowed_layer_equals_full_computation(rng):
  """Convolving only the window that the rescale back reads changes nothing."""
  from stir_jax.layers.resample import apply_separable, rescale_matrix
  kx, kw = jax.random.split(rng)
  x = jax.random.normal(kx, (2, 40, 40, 3))
  layer = kanazawa.KanazawaConv(features=4, kernel_size=5)
  variables = layer.init(kw, x)
  kernel = variables["params"]["conv"]["kernel"]
  bias = variables["params"]["conv"]["bias"]
  conv = lambda z: jax.lax.conv_general_dilated(
      z, kernel, (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC"),
      precision=jax.lax.Precision.HIGHEST) + bias
  full = []
  for s in SCALES:
    y = conv(apply_separable(x, rescale_matrix(40, s), rescale_matrix(40, s)))
    full.append(apply_separable(y, rescale_matrix(36, 1 / s), rescale_matrix(36, 1 / s)))
  assert kanazawa._window_operators(40, 40, 5, SCALES[0])[0].shape[0] < 40  # a window is cut
  np.testing.assert_allclose(layer.apply(variables, x), jnp.max(jnp.stack(full), axis=0),
                             rtol=1e-5, atol=1e-5)
