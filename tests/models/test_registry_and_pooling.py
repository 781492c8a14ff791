"""The registry, the standard and SiConv/ScalePool models: shapes, parameter counts, conversion
errors. Parity of every model with the authors' PyTorch outputs (fixtures/model_*.npz, through
convert.from_torch_state_dict), on every implementation, is in test_impls.py."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from stir_jax import convert, models
from tests.helpers import rel_err


def _count(params):
  return sum(int(np.prod(p.shape)) for p in jax.tree.leaves(params))


def test_unknown_model_lists_valid_names():
  with pytest.raises(ValueError, match="valid: standard, pixel_pool"):
    models.get_model("resnet", 1, 10)


@pytest.mark.parametrize("name, channels", [
    ("standard", 1), ("standard", 3), ("pixel_pool", 1), ("pixel_pool", 3)])
def test_shapes_and_parameter_counts(name, channels, rng):
  model = models.get_model(name, num_channels=channels, num_classes=36)
  x = jnp.zeros((2, 64, 64, channels))
  # shapes only: traced, not compiled (the forward passes are compared with the reference's
  # numbers in test_impls.py)
  variables = jax.eval_shape(model.init, rng, x)
  conv = 16 * channels * 49 + 16 + 16 * 32 * 49 + 32  # both models: two 7x7 layers of weights
  assert _count(variables["params"]) == conv + 32 * 36 + 36
  logits, aux = jax.eval_shape(lambda v, x: model.apply(v, x, with_aux=True), variables, x)
  assert logits.shape == (2, 36)
  assert aux["stage1"].shape == (2, 58, 58, 16) and aux["stage2"].shape == (2, 52, 52, 32)
  assert aux["features"].shape == (2, 32)
  if name == "pixel_pool":
    assert aux["pool1_indices"].shape == (2, 58, 58, 16)
    assert aux["pool2_indices"].shape == (2, 52, 52, 32)


def test_conversion_rejects_wrong_shapes(load_fixture):
  f = load_fixture("model_standard")
  state = {k: v for k, v in f.items() if "." in k}
  with pytest.raises(ValueError, match="lin"):
    convert.from_torch_state_dict("standard", state, num_channels=1, num_classes=36)
