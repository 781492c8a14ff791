"""Scale pooling against the reference fixtures (scalepool_*.npz)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from stir_jax.layers.scale_pool import POOL_MODES, ScalePool, scale_pool
from tests.helpers import rel_err


@pytest.mark.parametrize("mode", ["pixel", "slice", "energy"])
@pytest.mark.parametrize("suffix", ["", "_ties"])
def test_matches_reference(mode, suffix, load_fixture):
  f = load_fixture(f"scalepool_{mode}")
  y = jnp.asarray(f["x" + suffix].transpose(0, 2, 3, 4, 1))  # N C S H W -> B S H W C
  pooled, indices = scale_pool(y, mode)
  ref = f["out" + suffix].transpose(0, 2, 3, 1)
  ref_idx = f["indices" + suffix]
  if ref_idx.ndim == 4:
    ref_idx = ref_idx.transpose(0, 2, 3, 1)
  assert pooled.shape == ref.shape
  assert indices.dtype == jnp.int32 and indices.shape == ref_idx.shape
  assert rel_err(pooled, ref) <= 1e-6
  np.testing.assert_array_equal(np.asarray(indices), ref_idx)


def test_soft_limits(rng):
  y = jax.random.normal(rng, (2, 5, 6, 6, 3))
  pixel, pixel_idx = scale_pool(y, "pixel")
  cold, cold_idx = scale_pool(y, "soft", temperature=1e-4)
  np.testing.assert_allclose(cold, pixel, atol=1e-5)
  np.testing.assert_array_equal(cold_idx, pixel_idx)
  hot, _ = scale_pool(y, "soft", temperature=1e6)
  np.testing.assert_allclose(hot, jnp.mean(y, axis=1), atol=1e-5)


@pytest.mark.parametrize("mode", POOL_MODES)
def test_gradients_flow(mode, rng):
  y = jax.random.normal(rng, (2, 4, 5, 5, 3))
  g = jax.grad(lambda y: jnp.sum(scale_pool(y, mode)[0]))(y)
  assert np.all(np.isfinite(np.asarray(g)))
  if mode == "soft":
    assert np.all(np.asarray(g) != 0)
  else:
    # The gradient lands on the chosen entries only: exactly one scale per (b, h, w, c).
    np.testing.assert_array_equal(np.asarray(g).sum(axis=1), np.ones((2, 5, 5, 3)))


def test_unknown_mode():
  with pytest.raises(ValueError, match="pixel"):
    scale_pool(jnp.zeros((1, 2, 3, 3, 1)), "mean")


def test_module(rng):
  y = jax.random.normal(rng, (2, 4, 5, 5, 3))
  pool = ScalePool("soft", learnable_temperature=True)
  params = pool.init(rng, y)
  assert float(params["params"]["log_temperature"]) == 0.0
  pooled, idx = pool.apply(params, y)
  np.testing.assert_allclose(pooled, scale_pool(y, "soft", 1.0)[0], rtol=1e-6)
  pool = ScalePool("slice")
  assert pool.init(rng, y) == {}
  pooled, idx = pool.apply({}, y)
  assert pooled.shape == (2, 5, 5, 3) and idx.shape == (2, 3)
