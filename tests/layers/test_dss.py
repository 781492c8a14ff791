"""The DSS layers (stir_jax.layers.dss) against the authors' BesselConv2d and Dconv2d (peer fixtures
dss_besselconv2d.npz, dss_dconv2d.npz; ISosnovik/sesn models/impl/deep_scale_space.py)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from stir_jax.layers import dss
from tests.helpers import load_peer, nchw_to_nhwc, rel_err


def test_bessel_kernels_equal_the_peer_buffers(fixtures_dir):
  """Variances, widths and the stored kernelx_<d> / kernely_<d> (the kernel times a channel
  identity)."""
  arrays, args, meta = load_peer(fixtures_dir, "dss_besselconv2d")
  config = (args["n_scales"], args["base"], args["zero_scale"])
  np.testing.assert_allclose(dss.bessel_variances(*config), meta["derived"]["variances_t"],
                             rtol=1e-12)
  assert list(dss.bessel_widths(*config)) == meta["derived"]["widths"]
  eye = np.eye(args["n_channels"], dtype=np.float32)
  kernels = dss.bessel_kernels(*config)
  assert len(kernels) == args["n_scales"] - 1
  for d, k in enumerate(kernels):
    assert abs(float(k.sum()) - 1.0) < 1e-6  # renormalised, unlike pyscsp's discrete Gaussian
    assert rel_err(np.einsum("ij,n->ijn", eye, k)[:, :, None, :], arrays[f"kernelx_{d}"]) <= 1e-6
    assert rel_err(np.einsum("ij,n->ijn", eye, k)[:, :, :, None], arrays[f"kernely_{d}"]) <= 1e-6


def test_besselconv2d_matches_peer(fixtures_dir):
  arrays, args, _ = load_peer(fixtures_dir, "dss_besselconv2d")
  layer = dss.BesselConv2d(args["n_scales"], base=args["base"], zero_scale=args["zero_scale"])

  @jax.jit
  def run(x, r):
    y, vjp = jax.vjp(lambda x: layer.apply({}, x), x)
    return y, vjp(r)[0]

  y, grad_x = run(nchw_to_nhwc(arrays["x"]), nchw_to_nhwc(arrays["r"]))
  assert y.shape == (2, 4, 20, 20, 2)
  np.testing.assert_array_equal(y[:, 0], nchw_to_nhwc(arrays["x"]))  # scale 0 is the input
  assert rel_err(y, nchw_to_nhwc(arrays["y"])) <= 1e-5
  assert rel_err(grad_x, nchw_to_nhwc(arrays["grad_x"])) <= 1e-5


def test_bessel_kernels_are_built_under_jit():
  """A cold kernel cache filled while tracing (as inside a jitted model) gives the eager result."""
  x = jax.random.normal(jax.random.PRNGKey(0), (1, 12, 10, 2))
  eager = dss.dss_besselconv2d(x, 3, zero_scale=0.5)
  dss.bessel_kernels.cache_clear()
  dss._blur_matrices.cache_clear()  # pylint: disable=protected-access
  traced = jax.jit(lambda x: dss.dss_besselconv2d(x, 3, zero_scale=0.5))(x)
  np.testing.assert_allclose(traced, eager, rtol=1e-6, atol=1e-6)


def test_dconv2d_matches_peer(fixtures_dir):
  """Dconv2d(2, 3, [2, 3, 3], base 2, io_scales [3, 3], bias): dilations 1, 2, 4; top-scale taps
  dropped; bias once per output scale."""
  arrays, args, meta = load_peer(fixtures_dir, "dss_dconv2d")
  assert list(dss.dss_dilations(args["io_scales"][1], args["base"])) == (
      meta["derived"]["dilations"])
  layer = dss.Dconv2d(args["out_channels"], tuple(args["kernel_size"]), base=args["base"],
                      num_out_scales=args["io_scales"][0], use_bias=args["bias"])
  params = {"weights": arrays["weights"], "bias": arrays["bias"]}
  x = nchw_to_nhwc(arrays["x"])
  shapes = jax.eval_shape(layer.init, jax.random.PRNGKey(0), x)["params"]
  assert jax.tree.map(lambda a: a.shape, shapes) == jax.tree.map(np.shape, params)

  @jax.jit
  def run(params, x, r):
    y, vjp = jax.vjp(lambda p, x: layer.apply({"params": p}, x), params, x)
    return y, vjp(r)

  y, (grad_p, grad_x) = run(params, x, nchw_to_nhwc(arrays["r"]))
  assert rel_err(y, nchw_to_nhwc(arrays["y"])) <= 1e-5
  assert rel_err(grad_x, nchw_to_nhwc(arrays["grad_x"])) <= 1e-5
  for name in ("weights", "bias"):
    assert rel_err(grad_p[name], arrays[f"grad/{name}"]) <= 1e-5, name


def test_dconv2d_scale_taps_and_init(rng):
  """Output scale s reads input scales s .. s + kS - 1 only; at the top the missing taps are
  dropped (the kernel's second scale tap never reaches output scale S - 1). He init, bias 1."""
  layer = dss.Dconv2d(4, (2, 3, 3), use_bias=True)
  x = jax.random.normal(rng, (1, 3, 12, 12, 8))

  @jax.jit
  def run(key, x):
    params = layer.init(key, x)["params"]
    apply = lambda p, x: layer.apply({"params": p}, x)
    no_tap1 = {**params, "weights": params["weights"].at[:, :, 1].set(0.0)}
    return params, apply(params, x), apply(params, x.at[:, 1].set(0.0)), apply(no_tap1, x)

  params, y, y1, y_no_tap1 = run(rng, x)
  np.testing.assert_array_equal(params["bias"], 1.0)
  assert abs(float(jnp.std(params["weights"])) / np.sqrt(2 / (2 * 9 * 8)) - 1) < 0.15
  assert float(jnp.max(jnp.abs(y[:, 0] - y1[:, 0]))) > 0  # scale 1 feeds output 0 (tap 1)
  np.testing.assert_array_equal(y[:, 2], y1[:, 2])        # ... but not output 2
  np.testing.assert_array_equal(y_no_tap1[:, 2], y[:, 2])


@pytest.mark.parametrize("num_scales", [1, 3])
def test_bessel_shapes(num_scales):
  y = dss.dss_besselconv2d(jnp.ones((2, 9, 7, 3)), num_scales)
  assert y.shape == (2, num_scales, 9, 7, 3)


def test_dconv2d_semigroup_shift(rng):
  """Scale s + 1 of a Dconv2d (kS = 1) sampled at even pixels equals scale s of the same layer on
  the even-pixel subsampled input scales s + 1 ..: dilation 2^(s+1) on the grid is dilation 2^s on
  the subsampled grid (exactly, zero padding included)."""
  kx, kw = jax.random.split(rng)
  h = jax.random.normal(kx, (1, 3, 16, 16, 2))
  w = jax.random.normal(kw, (4, 2, 1, 3, 3))
  b = jnp.arange(4.0)
  y, y_sub = jax.jit(lambda h, w, b: (dss.dss_dconv2d(h, w, b),
                                       dss.dss_dconv2d(h[:, 1:, ::2, ::2], w, b)))(h, w, b)
  np.testing.assert_allclose(y[:, 1:, ::2, ::2], y_sub, rtol=1e-5, atol=1e-5)
