"""The registry, the standard and SiConv/ScalePool models: shapes, parameter counts, and parity with
the authors' PyTorch outputs (fixtures/model_*.npz) through convert.from_torch_state_dict."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from stir_jax import convert, models
from tests.helpers import rel_err


def _count(params):
  return sum(int(np.prod(p.shape)) for p in jax.tree.leaves(params))


def test_unknown_model_lists_valid_names():
  with pytest.raises(ValueError, match="valid models: standard, pixel_pool"):
    models.get_model("resnet", 1, 10)


@pytest.mark.parametrize("name, channels", [("standard", 1), ("standard", 3),
                                            ("pixel_pool", 1), ("pixel_pool", 3)])
def test_shapes_and_parameter_counts(name, channels, rng):
  model = models.get_model(name, num_channels=channels, num_classes=36)
  x = jnp.zeros((2, 64, 64, channels))
  variables = jax.jit(model.init)(rng, x)
  conv = 16 * channels * 49 + 16 + 16 * 32 * 49 + 32  # both models: two 7x7 layers of weights
  assert _count(variables["params"]) == conv + 32 * 36 + 36
  logits, aux = jax.jit(lambda v, x: model.apply(v, x, with_aux=True))(variables, x)
  assert logits.shape == (2, 36)
  assert aux["stage1"].shape == (2, 58, 58, 16) and aux["stage2"].shape == (2, 52, 52, 32)
  assert aux["features"].shape == (2, 32)
  if name == "pixel_pool":
    assert aux["pool1_indices"].shape == (2, 58, 58, 16)
    assert aux["pool2_indices"].shape == (2, 52, 52, 32)


def _nhwc(a):
  return np.asarray(a).transpose(0, 2, 3, 1)


@pytest.mark.parametrize("name", ["standard", "pixel_pool", "slice_pool", "energy_pool", "conv3d"])
def test_parity_with_reference(name, load_fixture):
  f = load_fixture(f"model_{name}")
  state = {k: v for k, v in f.items() if "." in k}
  variables = convert.from_torch_state_dict(name, state, num_channels=1, num_classes=10)
  model = models.get_model(name, 1, 10)
  x = _nhwc(f["x"])
  logits, aux = jax.jit(lambda v, x: model.apply(v, x, with_aux=True))(variables, x)
  assert rel_err(logits, f["logits"]) <= 1e-4
  assert rel_err(aux["features"], f.get("trace_features")) <= 1e-4
  if "trace_stage1" in f:
    assert rel_err(aux["stage1"], _nhwc(f["trace_stage1"])) <= 1e-4
    assert rel_err(aux["stage2"], _nhwc(f["trace_stage2"])) <= 1e-4
  if name.endswith("_pool"):
    for i in (1, 2):
      ref = f[f"pool{i}_indices"]
      ours = np.asarray(aux[f"pool{i}_indices"])
      ref = _nhwc(ref) if ref.ndim == 4 else ref
      # indices may differ only where the reference itself has (near-)ties; demand >99.9% equal
      assert np.mean(ours == ref) > 0.999, f"pool{i}: {np.mean(ours == ref)}"


def test_conversion_rejects_wrong_shapes(load_fixture):
  f = load_fixture("model_standard")
  state = {k: v for k, v in f.items() if "." in k}
  with pytest.raises(ValueError, match="lin"):
    convert.from_torch_state_dict("standard", state, num_channels=1, num_classes=36)


@pytest.mark.parametrize("fixture, name", [
    ("ensemble", "ensemble"), ("spatial_transform", "spatial_transform"),
    ("spatial_transform_perturbed", "spatial_transform"), ("xu", "xu"), ("kanazawa", "kanazawa"),
    ("hermite", "hermite"), ("disco", "disco")])
def test_every_baseline_loads_reference_weights_through_convert(fixture, name, load_fixture):
  f = load_fixture(f"model_{fixture}")
  state = {k: v for k, v in f.items() if "." in k}
  variables = convert.from_torch_state_dict(name, state, num_channels=1, num_classes=10)
  logits = jax.jit(models.get_model(name, 1, 10).apply)(variables, _nhwc(f["x"]))
  assert rel_err(logits, f["logits"]) <= 1e-4

