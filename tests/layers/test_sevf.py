"""SEVF's scale convolutions, vector max-pool and vector batch norm (stir_jax.layers.sevf) against
the sesn repository's ScaleConvScalar / ScaleConvVector (fixtures sevf_scaleconv_scalar/_vector)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from stir_jax.layers import sevf
from stir_jax.layers.sevf import SEVFScalarConv, SEVFVectorConv, VectorBatchNorm
from tests.helpers import load_peer, nchw_to_nhwc, rel_err
from tests.peer_checks import errors, outputs_and_vjp


def _kwargs(args):
  return dict(features=args["out_channels"], kernel_size=args["kernel_size"],
              padding=args["padding"], n_scales_small=args["n_scales_small"],
              n_scales_big=args["n_scales_big"], base=args["base"],
              angle_range=args["angle_range"])


def _hwio(w):
  return np.asarray(w).transpose(2, 3, 1, 0)


def test_scales_angles_and_rounding(fixtures_dir):
  _, args, meta = load_peer(fixtures_dir, "sevf_scaleconv_scalar")
  scales, angles = SEVFScalarConv(**_kwargs(args)).scales_and_angles()
  np.testing.assert_allclose(scales, meta["derived"]["scales"], rtol=1e-14)
  np.testing.assert_allclose(angles, meta["derived"]["angles"], rtol=1e-14, atol=1e-15)
  # Python's round: halves to even.
  assert [sevf.branch_size(n, s) for n, s in [(10, 0.25), (14, 0.25), (7, 0.5), (20, 0.125)]] == [
      2, 4, 4, 2]
  # At 7x7 the factors 0.397 and 0.4999 both give 3 (the README's exact ties in the MNIST model).
  assert [sevf.branch_size(7, s) for s in scales] == [3, 3, 4, 6, 7, 9, 11, 14]


def test_scalar_layer_matches_reference(fixtures_dir):
  a, args, _ = load_peer(fixtures_dir, "sevf_scaleconv_scalar")
  layer = SEVFScalarConv(**_kwargs(args))
  params = {"kernel": _hwio(a["weight"])}
  (u, v), grads, (grad_x,) = outputs_and_vjp(
      lambda p, x: layer.apply({"params": p}, x), params, (nchw_to_nhwc(a["x"]),),
      (nchw_to_nhwc(a["r_u"]), nchw_to_nhwc(a["r_v"])))
  errs = errors({"y_u": (u, nchw_to_nhwc(a["y_u"])), "y_v": (v, nchw_to_nhwc(a["y_v"])),
                 "grad_x": (grad_x, nchw_to_nhwc(a["grad_x"])),
                 "grad/weight": (grads["kernel"], _hwio(a["grad/weight"]))})
  assert max(errs.values()) <= 1e-5, errs


def test_vector_layer_matches_reference(fixtures_dir):
  a, args, _ = load_peer(fixtures_dir, "sevf_scaleconv_vector")
  layer = SEVFVectorConv(**_kwargs(args))
  params = {"kernel_u": _hwio(a["weight_u"]), "kernel_v": _hwio(a["weight_v"])}
  (u, v), grads, (gu, gv) = outputs_and_vjp(
      lambda p, u, v: layer.apply({"params": p}, u, v), params,
      (nchw_to_nhwc(a["x_u"]), nchw_to_nhwc(a["x_v"])),
      (nchw_to_nhwc(a["r_u"]), nchw_to_nhwc(a["r_v"])))
  errs = errors({"y_u": (u, nchw_to_nhwc(a["y_u"])), "y_v": (v, nchw_to_nhwc(a["y_v"])),
                 "grad_x_u": (gu, nchw_to_nhwc(a["grad_x_u"])),
                 "grad_x_v": (gv, nchw_to_nhwc(a["grad_x_v"])),
                 "grad/weight_u": (grads["kernel_u"], _hwio(a["grad/weight_u"])),
                 "grad/weight_v": (grads["kernel_v"], _hwio(a["grad/weight_v"]))})
  assert max(errs.values()) <= 1e-5, errs


def _brute_force_pool(u, v, window, padding):
  """Reference semantics written out: per window, the first (row-major) largest magnitude."""
  b, h, w, c = u.shape
  oh, ow = (h + 2 * padding) // window, (w + 2 * padding) // window
  out_u, out_v = np.zeros((b, oh, ow, c)), np.zeros((b, oh, ow, c))
  mag = np.sqrt(u**2 + v**2)
  for n, i, j, ch in np.ndindex(b, oh, ow, c):
    best = None
    for di in range(window):
      for dj in range(window):
        y, x = i * window + di - padding, j * window + dj - padding
        if 0 <= y < h and 0 <= x < w and (best is None or mag[n, y, x, ch] > mag[best + (ch,)]):
          best = (n, y, x)
    out_u[n, i, j, ch], out_v[n, i, j, ch] = u[best + (ch,)], v[best + (ch,)]
  return out_u, out_v


def test_vector_max_pool_picks_the_largest_magnitude():
  rng = np.random.default_rng(0)
  u = rng.standard_normal((2, 7, 7, 3)).astype(np.float32)
  v = rng.standard_normal((2, 7, 7, 3)).astype(np.float32)
  u[0, 0, 1, 0], v[0, 0, 1, 0] = v[0, 0, 0, 0], u[0, 0, 0, 0]   # an exact tie in one window
  pooled = jax.jit(lambda u, v: [sevf.vector_max_pool(u, v, 2), sevf.vector_max_pool(u, v, 4, 2)])(
      u, v)
  for (pu, pv), (window, padding) in zip(pooled, [(2, 0), (4, 2)]):
    ref_u, ref_v = _brute_force_pool(u, v, window, padding)
    np.testing.assert_array_equal(pu, ref_u)
    np.testing.assert_array_equal(pv, ref_v)
  assert pooled[1][0].shape == (2, 2, 2, 3)


def test_vector_batch_norm_eval_and_train():
  rng = np.random.default_rng(1)
  u = jnp.asarray(rng.standard_normal((4, 5, 5, 3)), jnp.float32)
  v = jnp.asarray(rng.standard_normal((4, 5, 5, 3)), jnp.float32)
  bn = VectorBatchNorm()
  variables = bn.init(jax.random.PRNGKey(0), u, v)
  assert jax.tree.map(jnp.shape, variables) == {"batch_stats": {"running_var": (3,)}}
  running = jnp.array([0.5, 1.0, 2.0])
  eu, ev = bn.apply({"batch_stats": {"running_var": running}}, u, v)
  np.testing.assert_allclose(eu, u / np.sqrt(1e-5 + running), rtol=1e-6)
  np.testing.assert_allclose(ev, v / np.sqrt(1e-5 + running), rtol=1e-6)
  (tu, _), state = bn.apply({"batch_stats": {"running_var": running}}, u, v, train=True,
                            mutable=["batch_stats"])
  mag = np.sqrt(np.asarray(u)**2 + np.asarray(v)**2)
  var = mag.var(axis=(0, 1, 2))
  np.testing.assert_allclose(tu, u / np.sqrt(1e-5 + var), rtol=1e-5)
  n = 4 * 5 * 5
  np.testing.assert_allclose(state["batch_stats"]["running_var"],
                             0.5 * running + 0.5 * var * n / (n - 1), rtol=1e-5)


def test_magnitude_has_a_finite_gradient_at_zero():
  g = jax.grad(lambda u, v: jnp.sum(sevf.vector_magnitude(u, v)), argnums=(0, 1))(
      jnp.array([0.0, 3.0]), jnp.array([0.0, 4.0]))
  np.testing.assert_allclose(g[0], [0.0, 0.6], rtol=1e-6)
  np.testing.assert_allclose(g[1], [0.0, 0.8], rtol=1e-6)


def test_errors():
  with pytest.raises(ValueError, match="square"):
    sevf.sevf_scalar_conv2d(jnp.zeros((1, 8, 9, 1)), jnp.zeros((3, 3, 1, 1)), [1.0], [0.0])
  with pytest.raises(ValueError, match="no output"):
    sevf.branch_operators(8, 7, 0, 0.25)
