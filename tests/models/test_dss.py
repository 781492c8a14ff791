"""The STIR DSS model (stir_jax.models.dss): shapes, the parameter count (that of the SESN models,
the paper's ~27k), and the missing reference checkpoint. Its numerics rest on the layer parity tests
(tests/layers/test_dss.py); the registry-wide tests (dtypes, export, imports) run it too."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from stir_jax import convert, models


def _count(tree) -> int:
  return sum(int(np.prod(a.shape)) for a in jax.tree.leaves(tree))


@pytest.mark.parametrize("channels, classes, expected", [(1, 36, 27108), (1, 10, 26250),
                                                         (3, 16, 28016)])
def test_parameter_count_matches_the_sesn_models(channels, classes, expected, rng):
  x = jnp.zeros((2, 64, 64, channels))
  model = models.get_model("dss", channels, classes)
  params = jax.eval_shape(model.init, rng, x)["params"]
  assert _count(params) == expected
  assert _count(params) == 16 * channels * 49 + 16 + 32 * 16 * 49 + 32 + 33 * classes
  hermite = models.get_model("hermite", channels, classes)
  assert _count(jax.eval_shape(hermite.init, rng, x)["params"]) == expected
  assert params["conv1"]["weights"].shape == (16, channels, 1, 7, 7)
  assert params["conv2"]["weights"].shape == (32, 16, 1, 7, 7)


def test_aux_shapes(rng):
  model = models.get_model("dss", 1, 36)
  x = jnp.zeros((2, 64, 64, 1))
  variables = jax.eval_shape(model.init, rng, x)
  logits, aux = jax.eval_shape(lambda v, x: model.apply(v, x, with_aux=True), variables, x)
  assert logits.shape == (2, 36)
  assert aux["stage1"].shape == (2, 3, 64, 64, 16)
  assert aux["stage2"].shape == (2, 3, 64, 64, 32)
  assert aux["features"].shape == (2, 32)


def test_from_torch_raises_clearly():
  with pytest.raises(ValueError, match="no reference checkpoint"):
    convert.from_torch_state_dict("dss", {}, num_channels=1, num_classes=10)
