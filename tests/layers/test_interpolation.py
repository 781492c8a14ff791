"""Kernel interpolation against the reference fixtures (interpolate_*.npz)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from stir_jax.layers.interpolation import MODES, interpolation_matrix, resize_kernel
from tests.helpers import rel_err


@pytest.mark.parametrize("mode", MODES)
def test_resize_kernel_matches_reference(mode, load_fixture):
  f = load_fixture(f"interpolate_{mode}")
  k = int(f["kernel_size"])
  weight = jnp.asarray(f["x"].transpose(2, 3, 1, 0))  # OIHW -> HWIO
  for t in f["sizes"]:
    t = int(t)
    out = resize_kernel(weight, t, mode)
    ref = f[f"out_{t}"].transpose(2, 3, 1, 0)
    assert out.shape == (t, t, weight.shape[2], weight.shape[3])
    assert rel_err(out, ref) <= 1e-5, (mode, t)
    if mode == "area":
      a = interpolation_matrix(k, t, mode)
      np.testing.assert_allclose(np.kron(a, a), f[f"interpolation_matrix_{t}"], atol=1e-6)


@pytest.mark.parametrize("mode", MODES)
def test_matrix_properties(mode):
  a = interpolation_matrix(7, 15, mode)
  assert a.shape == (15, 7) and a.dtype == np.float64
  np.testing.assert_allclose(interpolation_matrix(7, 7, mode), np.eye(7), atol=1e-12)
  if mode != "bicubic":  # bicubic weights sum to 1 as well, but can be negative
    assert np.all(a >= 0)
  np.testing.assert_allclose(a.sum(axis=1), 1.0, atol=1e-12)
  with pytest.raises(ValueError):
    a[0, 0] = 1.0  # cached arrays are read-only
  assert interpolation_matrix(7, 15, mode) is a


def test_legacy_nearest_and_bicubic_taps():
  a = interpolation_matrix(7, 9, "nearest")
  assert list(np.argmax(a, axis=1)) == [o * 7 // 9 for o in range(9)]
  b = interpolation_matrix(7, 9, "bicubic")
  assert np.any(b < 0)  # a = -0.75 lobes


def test_unknown_mode():
  with pytest.raises(ValueError, match="nearest"):
    interpolation_matrix(7, 9, "lanczos")


def test_resize_kernel_differentiable():
  w = jax.random.normal(jax.random.PRNGKey(0), (7, 7, 2, 3))
  g = jax.grad(lambda w: jnp.sum(resize_kernel(w, 11, "bicubic") ** 2))(w)
  assert g.shape == w.shape and np.all(np.isfinite(np.asarray(g)))
  # Linear map: the gradient of <resize(w), r> is the adjoint applied to r.
  a = interpolation_matrix(7, 11, "bicubic") * 7 / 11
  r = np.random.default_rng(0).normal(size=(11, 11, 2, 3)).astype(np.float32)
  g = jax.grad(lambda w: jnp.sum(resize_kernel(w, 11, "bicubic") * r))(w)
  np.testing.assert_allclose(g, np.einsum("ya,yxio,xb->abio", a, r, a), rtol=1e-5, atol=1e-6)
