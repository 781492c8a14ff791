"""The STIR variants of SS-CNN ("ss") and SEVF ("sevf"): registry entries, shapes, parameter counts
near the paper's ~27k, the chosen scales, and the missing reference checkpoint."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from stir_jax import convert, models
from stir_jax.layers.sevf import branch_size, sevf_scales
from stir_jax.models.scale_steerable import ScaleSteerableModel
from stir_jax.models.sevf import SEVFModel


def _count(tree) -> int:
  return sum(int(np.prod(a.shape)) for a in jax.tree.leaves(tree))


@pytest.mark.parametrize("name, kwargs, channels, expected", [
    ("ss", {}, 1, 2 * 27 * 16 * 1 + 2 * 27 * 32 * 16 + 33 * 36),
    ("ss", {}, 3, 2 * 27 * 16 * 3 + 2 * 27 * 32 * 16 + 33 * 36),
    ("sevf", {}, 1, 16 * 49 + 32 * 16 * 49 + 33 * 36),
    ("sevf", {"vector": True}, 1, 16 * 49 + 2 * 32 * 16 * 49 + 33 * 36)])
def test_shapes_and_parameter_counts(name, kwargs, channels, expected, rng):
  model = models.get_model(name, channels, 36, **kwargs)
  x = jnp.zeros((2, 64, 64, channels))
  variables = jax.eval_shape(model.init, rng, x)
  assert set(variables) == {"params"}
  assert _count(variables["params"]) == expected
  logits, aux = jax.eval_shape(lambda v, x: model.apply(v, x, with_aux=True), variables, x)
  assert logits.shape == (2, 36)
  assert aux["stage1"].shape == (2, 64, 64, 16) and aux["stage2"].shape == (2, 64, 64, 32)
  assert aux["features"].shape == (2, 32)


def test_parameter_counts_stated_in_the_docstrings(rng):
  """29,700 (ss), 27,060 (sevf) and 52,148 (sevf, vector) for grey images and 36 classes, against
  the standard CNN's 27,108."""
  x = jnp.zeros((1, 64, 64, 1))
  count = lambda m: _count(jax.eval_shape(m.init, rng, x)["params"])
  assert count(models.get_model("standard", 1, 36)) == 27108
  assert count(ScaleSteerableModel(36)) == 29700
  assert count(SEVFModel(36)) == 27060
  assert count(SEVFModel(36, vector=True)) == 52148


def test_chosen_scales_cover_the_object_sizes():
  """STIR objects span 17 .. 64 px (3.8x): the SS kernel sizes span 19 / 5 = 3.8x and the SEVF
  factors 1.26**6 = 4.0x (branches of 16 .. 64 px on a 64 px image, no upscaling)."""
  sizes = ScaleSteerableModel(10).kernel_sizes
  assert max(sizes) / min(sizes) == pytest.approx(64 / 17, rel=0.02)
  model = SEVFModel(10)
  scales, angles = sevf_scales(model.n_scales_small, model.n_scales_big, model.base)
  np.testing.assert_allclose(scales[[0, -1]], [1.26**-6, 1.0])
  assert angles[-1] == 0 and len(angles) == 7
  assert [branch_size(64, s) for s in scales] == [16, 20, 25, 32, 40, 51, 64]


@pytest.mark.parametrize("name", ["ss", "sevf"])
def test_no_reference_checkpoint(name):
  with pytest.raises(ValueError, match="no reference checkpoint"):
    convert.from_torch_state_dict(name, {}, num_channels=1, num_classes=10)
