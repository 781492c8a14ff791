"""The public equivariance helper: pixel pooling is closer to scale equivariant than a plain conv."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from stir_jax import models
from stir_jax import metrics
from stir_jax.eval import equivariance
from stir_jax.data import emoji


@pytest.fixture(scope="module")
def two_icons():
  return emoji.generate_emoji(emoji.EMOJI_NAMES[:2], progress=False)


def test_pixel_pool_stage1_error_below_standard(two_icons):
  std = models.get_model("standard", 1, 2)
  pix = models.get_model("pixel_pool", 1, 2)
  x = jnp.zeros((1, 64, 64, 1))
  v_std = jax.jit(std.init)(jax.random.PRNGKey(3), x)
  v_pix = jax.jit(pix.init)(jax.random.PRNGKey(3), x)
  # the same 7x7 first-layer kernels in both, so only the architecture differs
  v_pix["params"]["conv1"] = v_std["params"]["conv1"]
  e_std = equivariance.model_equivariance_errors(std, v_std, two_icons, stages=("stage1",))
  e_pix = equivariance.model_equivariance_errors(pix, v_pix, two_icons, stages=("stage1",))
  assert e_std["stage1"].shape == (2, 1, 6)
  mean_std, mean_pix = np.mean(e_std["stage1"]), np.mean(e_pix["stage1"])
  assert np.all(np.isfinite(e_std["stage1"])) and np.all(np.isfinite(e_pix["stage1"]))
  assert mean_pix < 0.8 * mean_std, (mean_pix, mean_std)


def test_scale_equivariance_error_of_a_resize_equivariant_map_is_small(two_icons):
  # the identity "feature map" is exactly as equivariant as resizing the image allows
  data = two_icons
  identity = lambda img: img.astype(np.float64)
  i64, i49 = 0, 64 - 49
  err = equivariance.scale_equivariance_error(
      identity, data.imgs[2, i64, 0, 0, :, :, None], 64, data.psts[2, i64, 0, 0],
      data.imgs[2, i49, 0, 0, :, :, None], 49, data.psts[2, i49, 0, 0])
  assert 0 <= err < 0.2
