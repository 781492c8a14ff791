"""PyTorch-semantics resampling helpers."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from stir_jax.layers import resample


def test_bilinear_half_pixel_upsample_values():
  # in 4 -> out 8, src = (o + 0.5) / 2 - 0.5 clamped at 0; upper tap clamped to 3.
  mat = resample.linear_resize_matrix(4, 8, align_corners=False)
  np.testing.assert_allclose(mat @ np.arange(4.0), [0, 0.25, 0.75, 1.25, 1.75, 2.25, 2.75, 3])
  np.testing.assert_allclose(mat.sum(1), 1.0)


def test_bilinear_half_size_is_average_pooling():
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 8, 6, 3))
  y = jax.jit(resample.resize_bilinear, static_argnums=(1, 2))(x, (4, 3), False)
  expected = x.reshape(2, 4, 2, 3, 2, 3).mean(axis=(2, 4))
  np.testing.assert_allclose(y, expected, rtol=1e-6, atol=1e-6)


def test_bilinear_align_corners_keeps_ends_and_ramps():
  mat = resample.linear_resize_matrix(11, 3, align_corners=True)
  np.testing.assert_array_equal(mat @ np.arange(11.0), [0, 5, 10])
  ramp = resample.linear_resize_matrix(5, 9, align_corners=True) @ np.arange(5.0)
  np.testing.assert_allclose(ramp, np.arange(9) / 2)


def test_center_pad_crop():
  pad = resample.center_pad_crop_matrix(3, 6)  # left 1, right 2
  np.testing.assert_array_equal(pad @ np.array([1.0, 2, 3]), [0, 1, 2, 3, 0, 0])
  crop = resample.center_pad_crop_matrix(7, 4)  # left -2 (floor of -1.5): extra comes off the left
  np.testing.assert_array_equal(crop @ np.arange(7.0), [2, 3, 4, 5])


def test_rescale_matrix_identity_and_shape():
  np.testing.assert_array_equal(resample.rescale_matrix(10, 1.0), np.eye(10))
  up = resample.rescale_matrix(64, 2.000376)
  assert up.shape == (64, 64)
  # 64 -> 128 then the central 64 rows: (128 - 64) // 2 = 32 rows cropped at the top.
  full = resample.linear_resize_matrix(64, 128, True)
  np.testing.assert_array_equal(up, full[32:96])


def test_pyramid_matches_reference(fixtures_dir):
  with np.load(fixtures_dir / "model_ensemble.npz") as f:
    x, p1, p2 = f["x"], f["extra_pyramid_1"], f["extra_pyramid_2"]
  levels = jax.jit(resample.gaussian_pyramid)(jnp.asarray(x.transpose(0, 2, 3, 1)))
  np.testing.assert_allclose(levels[1], p1.transpose(0, 2, 3, 1), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(levels[2], p2.transpose(0, 2, 3, 1), rtol=1e-5, atol=1e-6)


def test_blur_reflects_without_repeating_edge():
  x = jnp.zeros((1, 8, 8, 1)).at[0, 1, 3, 0].set(1.0)
  y = np.asarray(resample.binomial_blur(x))[0, :, :, 0]
  # An impulse at row 1: output row 0 reads rows (2, 1, 0, 1, 2), so it sees the impulse twice
  # (4 + 4); row 1 reads (1, 0, 1, 2, 3): 1 + 6. Edge-repeating padding would give 4 + 1 and 6.
  np.testing.assert_allclose(y[:4, 3], np.array([8, 7, 4, 1]) / 16 * 6 / 16, rtol=1e-6)
  # Constants are preserved.
  np.testing.assert_allclose(resample.binomial_blur(jnp.ones((1, 7, 9, 2))), 1.0, rtol=1e-6)


def test_affine_identity_and_shift():
  x = jax.random.uniform(jax.random.PRNGKey(1), (2, 16, 12, 3))
  identity = jnp.tile(jnp.array([[1.0, 0, 0], [0, 1, 0]]), (2, 1, 1))
  warp = jax.jit(resample.affine_warp)
  np.testing.assert_allclose(warp(x, identity), x, atol=1e-6)
  # Shift the sampling point one pixel right: out[:, :, j] = x[:, :, j + 1], zeros past the edge.
  shift = identity.at[:, 0, 2].set(2.0 / 12)
  y = warp(x, shift)
  np.testing.assert_allclose(y[:, :, :-1], x[:, :, 1:], atol=1e-5)
  np.testing.assert_allclose(y[:, :, -1], 0.0, atol=1e-5)
  # Half a pixel down: interior rows average neighbours; the last row mixes with zero padding.
  half = identity.at[:, 1, 2].set(1.0 / 16)
  y = warp(x, half)
  np.testing.assert_allclose(y[:, :-1], (x[:, :-1] + x[:, 1:]) / 2, atol=1e-5)
  np.testing.assert_allclose(y[:, -1], x[:, -1] / 2, atol=1e-5)


def test_affine_warp_matches_reference_sampling(fixtures_dir):
  with np.load(fixtures_dir / "model_spatial_transform_perturbed.npz") as f:
    x, theta, warped = f["x"], f["extra_theta"], f["extra_transformed"]
  y = jax.jit(resample.affine_warp)(jnp.asarray(x.transpose(0, 2, 3, 1)), jnp.asarray(theta))
  np.testing.assert_allclose(y, warped.transpose(0, 2, 3, 1), atol=1e-5)


def test_affine_grid_coordinates():
  theta = jnp.array([[[1.0, 0, 0], [0, 1, 0]]])
  grid = resample.affine_grid(theta, (2, 4))
  np.testing.assert_allclose(grid[0, 0, :, 0], [-0.75, -0.25, 0.25, 0.75])
  np.testing.assert_allclose(grid[0, :, 0, 1], [-0.5, 0.5])


def test_warp_gradient_matches_finite_difference():
  x = jax.random.uniform(jax.random.PRNGKey(2), (1, 10, 10, 1))
  theta = jnp.array([[[0.9, 0.1, 0.05], [-0.05, 1.1, 0.02]]])

  @jax.jit
  def f(t):
    return jnp.sum(resample.affine_warp(x, t) ** 2)

  grad = jax.jit(jax.grad(f))(theta)
  eps = 1e-3
  for idx in [(0, 0, 0), (0, 1, 2)]:
    d = jnp.zeros_like(theta).at[idx].set(eps)
    fd = (f(theta + d) - f(theta - d)) / (2 * eps)
    np.testing.assert_allclose(grad[idx], fd, rtol=2e-2)


def test_pyramid_and_sampler_modules():
  from stir_jax.layers import AffineWarp, GaussianPyramid
  x = jax.random.uniform(jax.random.PRNGKey(3), (2, 16, 16, 3))
  levels, ref = jax.jit(lambda x: (GaussianPyramid(levels=3).apply({}, x),
                                   resample.gaussian_pyramid(x, 3)))(x)
  assert [p.shape for p in levels] == [(2, 16, 16, 3), (2, 8, 8, 3), (2, 4, 4, 3)]
  for a, b in zip(levels, ref):
    np.testing.assert_array_equal(a, b)
  theta = jnp.array([[[0.9, 0.1, 0.05], [-0.05, 1.1, 0.02]]] * 2)
  identity = jnp.tile(jnp.array([[1.0, 0, 0], [0, 1, 0]]), (2, 1, 1))
  warp = jax.jit(AffineWarp().apply)
  np.testing.assert_array_equal(warp({}, x, theta), jax.jit(resample.affine_warp)(x, theta))
  np.testing.assert_allclose(warp({}, x, identity), x, atol=1e-6)
  low = jax.jit(AffineWarp(dtype=jnp.bfloat16).apply)({}, x, identity)
  assert low.dtype == jnp.bfloat16
  np.testing.assert_allclose(low.astype(jnp.float32), x, atol=4e-3)
