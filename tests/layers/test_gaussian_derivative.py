"""The Gaussian derivative layer (stir_jax.layers.gaussian_derivative) against a direct float64
NumPy/scipy construction of the same operator, the pyscsp-checked N-jet and jet2mask, linearity,
the combination weights and gradients.

No peer implementation exists (tests/fixtures/peers/README.md), so the reference is built here
from its definition: scipy.special.ive (discrete analogue), the sampled and the erf-integrated
Gaussian, scipy.ndimage.correlate1d with mode "reflect" for the smoothing and the central
differences, an einsum for the combination. Float64 against float64: 1e-12 of max|ref| (only
rounding differs; measured <= 3e-14). Float32 against the float64 reference: 2e-5 (measured
<= 7.7e-6: the second differences cancel L down to Lxx, amplifying float32 rounding).
"""
import math

import jax
import jax.numpy as jnp
from jax import test_util
import numpy as np
import pytest
from scipy import ndimage, special

from stir_jax.layers import gaussian
from stir_jax.layers import gaussian_derivative as gd
from tests.helpers import rel_err

SIGMAS = (0.6, 1.3, 6.0)  # 6.0: half-width 36 > the 24x20 image, so the reflect folding is used
F64_TOL = 1e-12
F32_TOL = 2e-5


def _np_kernel(method, sigma, N):
  n = np.arange(-N, N + 1, dtype=np.float64)
  if method == "discgauss":
    return special.ive(np.abs(n), sigma**2)
  if method == "samplgauss":
    return np.exp(-n**2 / (2 * sigma**2)) / (math.sqrt(2 * math.pi) * sigma)
  if method == "intgauss":
    c = math.sqrt(2) * sigma
    return 0.5 * (special.erf((n + 0.5) / c) - special.erf((n - 0.5) / c))
  raise ValueError(method)


def _np_layer(x, weights, bias, sigmas, method="discgauss", zero_order=True, gamma=1.0, N=None):
  """Float64 reference: x (B, H, W, C) or (B, S, H, W, C) -> (B, S, H, W, O)."""
  x = np.asarray(x, np.float64)
  N = gd.shared_halfwidth(sigmas, method) if N is None else N
  d1, d2 = np.array([-0.5, 0.0, 0.5]), np.array([1.0, -2.0, 1.0])
  corr = lambda a, k, axis: ndimage.correlate1d(a, k, axis=axis, mode="reflect")
  out = []
  for i, s in enumerate(sigmas):
    xi = x if x.ndim == 4 else x[:, i]
    k = _np_kernel(method, s, N)
    L = corr(corr(xi, k, 1), k, 2)  # rows (H), then columns (W)
    jet = {"L": L, "Lx": s**gamma * corr(L, d1, 2), "Ly": -s**gamma * corr(L, d1, 1),
           "Lxx": s**(2 * gamma) * corr(L, d2, 2), "Lyy": s**(2 * gamma) * corr(L, d2, 1),
           "Lxy": -s**(2 * gamma) * corr(corr(L, d1, 2), d1, 1)}
    terms = gd.JET_TERMS if zero_order else gd.JET_TERMS[1:]
    y = sum((0.5 if len(t) == 3 else 1.0) * np.einsum("bhwc,co->bhwo", jet[t], weights[j])
            for j, t in enumerate(terms))
    out.append(y + (0 if bias is None else bias))
  return np.stack(out, axis=1)


def _data(seed, x_shape, terms, channels_out):
  rng = np.random.default_rng(seed)
  x = rng.random(x_shape)
  w = rng.normal(size=(terms, x_shape[-1], channels_out))
  b = rng.normal(size=(channels_out,))
  return x, w, b


CASES = [  # (method, zero_order, input with a scale axis)
    ("discgauss", True, False), ("discgauss", False, True), ("samplgauss", True, True),
    ("intgauss", False, False)]


def test_layer_matches_numpy_scipy_reference():
  """Float64 (x64) and float32, both input forms, three smoothing kernels, with and without the
  zero-order term; a non-square image (24x20) catches x/y mix-ups."""
  inputs, refs = [], []
  for n, (method, zero_order, scale_axis) in enumerate(CASES):
    shape = (2, len(SIGMAS), 24, 20, 2) if scale_axis else (2, 24, 20, 2)
    x, w, b = _data(n, shape, 6 if zero_order else 5, 3)
    inputs.append((x, w, b))
    refs.append(_np_layer(x, w, b, SIGMAS, method, zero_order))

  def compute(dtype):
    return [gd.gaussian_derivative_conv(jnp.asarray(x, dtype), jnp.asarray(w, dtype),
                                        jnp.asarray(b, dtype), SIGMAS, zero_order=zero_order,
                                        method=method)
            for (x, w, b), (method, zero_order, _) in zip(inputs, CASES)]
  with jax.enable_x64(True):
    ours64 = jax.tree.map(np.asarray, jax.jit(lambda: compute(jnp.float64))())
  ours32 = jax.tree.map(np.asarray, jax.jit(lambda: compute(jnp.float32))())
  for case, ref, o64, o32 in zip(CASES, refs, ours64, ours32):
    assert o64.shape == ref.shape == (2, 3, 24, 20, 3) and o64.dtype == np.float64
    assert rel_err(o64, ref) <= F64_TOL, case
    assert o32.dtype == np.float32 and rel_err(o32, ref) <= F32_TOL, case


def test_shared_halfwidth_is_pyscsp_rule_at_the_largest_sigma():
  assert gd.shared_halfwidth(SIGMAS) == gaussian.discgauss_halfwidth(6.0, 1e-8, 2) == 36
  assert gd.shared_halfwidth(SIGMAS, "intgauss", 1e-4) == gaussian.gauss_halfwidth(6.0, 1e-4, 2)
  with pytest.raises(ValueError, match="unknown smoothing"):
    gd.shared_halfwidth(SIGMAS, "box")


def test_reflect_matrices_are_scipy_correlations():
  """Any half-width, also wider than twice the axis (folded several times), in float64."""
  rng = np.random.default_rng(5)
  cases = [(size, rng.normal(size=(2, 2 * N + 1)), rng.normal(size=size))
           for size, N in ((7, 2), (7, 20), (16, 40))]
  with jax.enable_x64(True):
    mats = jax.jit(lambda ks: [gd.reflect_matrices(k, size) for (size, _, _), k in
                               zip(cases, ks)])([jnp.asarray(k) for _, k, _ in cases])
  for (size, k, v), m in zip(cases, mats):
    for s in range(2):
      ref = ndimage.correlate1d(v, k[s], mode="reflect")
      assert rel_err(np.asarray(m[s]) @ v, ref) <= F64_TOL, (size, s)


def test_weights_select_jet_terms_and_match_jet2mask():
  """A single nonzero coefficient picks out f_t * sigma^|alpha| d^alpha L: the pyscsp-checked
  `gaussian.njet(normalize=True)` per scale channel, as does `scale_channel_jet`; and the
  derivative-only layer with one input and output channel equals the smoothed image correlated
  with pyscsp's jet2mask template (Lindeberg 2022, eq. 11) whose C0 is 0."""
  x = np.random.default_rng(1).random((1, 24, 20, 2))
  N = gd.shared_halfwidth(SIGMAS)
  C = np.array([0.0, 0.7, -1.1, 0.4, 0.9, -0.3])

  def compute():
    out = {"jet": gd.scale_channel_jet(jnp.asarray(x), SIGMAS)}
    for t, term in enumerate(gd.JET_TERMS):
      w = jnp.zeros((6, 2, 3)).at[t, 1, 2].set(1.0)
      y = gd.gaussian_derivative_conv(jnp.asarray(x), w, None, SIGMAS)
      out[term] = (y[0, :, :, :, 2], jnp.abs(y[..., :2]).max())
      for i, s in enumerate(SIGMAS):
        out[f"{term}/njet{i}"] = gaussian.njet(jnp.asarray(x[0, :, :, 1]), s, normalize=True,
                                               N=N)[term]
    y = gd.gaussian_derivative_conv(jnp.asarray(x[..., :1]), jnp.asarray(C[1:, None, None]),
                                    None, SIGMAS, zero_order=False)
    out["combined"] = y[0, :, :, :, 0]
    for i, s in enumerate(SIGMAS):
      L = gaussian.scale_space(jnp.asarray(x[0, :, :, 0]), s, N=N)
      mask = gaussian.jet2mask(jnp.asarray(C), s, dtype=jnp.float64)
      Lp = jnp.pad(L, 1, mode="symmetric")
      out[f"jet2mask{i}"] = sum(mask[a, b] * Lp[a:a + 24, b:b + 20]
                                for a in range(3) for b in range(3))
    return out
  with jax.enable_x64(True):
    out = jax.tree.map(np.asarray, jax.jit(compute)())
  for t, term in enumerate(gd.JET_TERMS):
    y, others = out[term]
    assert float(others) == 0.0, term  # the other output channels stay at zero
    factor = 0.5 if len(term) == 3 else 1.0
    for i in range(len(SIGMAS)):
      # 1e-11: a single second-order term at sigma 6 is ~50x smaller than L, whose rounding (the
      # matmul here, njet's convolution there) it inherits; measured 1.3e-12 (Lxx), others <= 1e-13.
      assert rel_err(y[i], factor * out[f"{term}/njet{i}"]) <= 1e-11, (term, i)
      # The stored jet (scale_channel_jet, the reference form of the layer) is the same.
      assert rel_err(out["jet"][0, i, :, :, t, 1], out[f"{term}/njet{i}"]) <= 1e-11, (term, i)
  for i in range(len(SIGMAS)):
    assert rel_err(out["combined"][i], out[f"jet2mask{i}"]) <= F64_TOL, i


def test_linearity_and_scale_channel_independence(rng):
  kx, ky, kw, kv = jax.random.split(rng, 4)
  x1 = jax.random.normal(kx, (2, 3, 16, 16, 2))
  x2 = jax.random.normal(ky, (2, 3, 16, 16, 2))
  w1 = jax.random.normal(kw, (6, 2, 4))
  w2 = jax.random.normal(kv, (6, 2, 4))
  b = jnp.arange(4.0)
  f = lambda x, w, b: gd.gaussian_derivative_conv(x, w, b, SIGMAS)

  @jax.jit
  def compute():  # two layer calls: inputs stacked on the batch, weights vmapped
    xs = jnp.concatenate([2 * x1 - 3 * x2, x1, x2, x1.at[:, 1].set(0.0)])
    y = f(xs, w1, b).reshape(4, *x1.shape[:-1], 4)
    yw = jax.vmap(lambda w: f(x1, w, None))(jnp.stack([w1, w2, w1 + w2]))
    return (y[0] - b, 2 * (y[1] - b) - 3 * (y[2] - b), yw[2], yw[0] + yw[1], y[1], y[3])
  lhs, rhs, wsum, sumw, y, y_masked = compute()
  assert rel_err(lhs, rhs) <= 1e-5 and rel_err(wsum, sumw) <= 1e-5
  # Scale channel 1 of the input only reaches scale channel 1 of the output (the others agree to
  # rounding: they are different rows of one batched computation).
  assert rel_err(y_masked[:, [0, 2]], y[:, [0, 2]]) <= 1e-6
  assert float(jnp.max(jnp.abs(y[:, 1] - y_masked[:, 1]))) > 0.1


def test_gradients_check_grads_and_finite():
  """jax.test_util.check_grads (against finite differences, float64): forward and reverse mode in
  x, weights and bias; reverse mode in the sigmas themselves (learnable scales, fixed
  half-width)."""
  x, w, b = _data(3, (1, 2, 9, 8, 2), 6, 2)
  with jax.enable_x64(True):
    f = lambda x, w, b: gd.gaussian_derivative_conv(x, w, b, (0.8, 1.7))
    test_util.check_grads(jax.jit(f), (x, w, b), order=1, modes=("fwd", "rev"))
    g = lambda s: gd.gaussian_derivative_conv(x, w, b, s, halfwidth=12)
    test_util.check_grads(jax.jit(g), (np.array([0.8, 1.7]),), order=1, modes=("rev",),
                          eps=1e-5)
  # Float32 gradients of a scalar loss are finite and nonzero for every argument.
  grads = jax.jit(jax.grad(lambda *a: jnp.sum(f(*a) ** 2), argnums=(0, 1, 2)))(
      *(jnp.asarray(a, jnp.float32) for a in (x, w, b)))
  for g32 in grads:
    assert g32.dtype == jnp.float32 and bool(jnp.all(jnp.isfinite(g32)))
    assert float(jnp.max(jnp.abs(g32))) > 0


def test_module_params_dtypes_and_errors(rng):
  x = jax.random.uniform(rng, (2, 20, 20, 3))
  layer = gd.GaussDerConv(5, sigmas=gd.scale_series(1.0, math.sqrt(2), 4))
  params = jax.jit(layer.init)(rng, x)["params"]
  assert params["kernel"].shape == (6, 3, 5) and params["bias"].shape == (5,)
  assert not np.any(params["bias"])
  # He initialisation over the input channels: N(0, 2 / C), here C = 50 (60,000 draws).
  draws = gd.he_jet_init(rng, (6, 50, 200))
  assert abs(float(jnp.std(draws)) / math.sqrt(2 / 50) - 1) < 0.02
  assert abs(float(jnp.mean(draws))) < 0.005  # 6 standard errors
  # The derivative-only layer has 5 terms; bfloat16 computation with float32 parameters.
  low = gd.GaussDerConv(5, sigmas=layer.sigmas, zero_order=False, dtype=jnp.bfloat16)
  low_params = jax.eval_shape(low.init, rng, x)["params"]
  assert low_params["kernel"].shape == (5, 3, 5) and low_params["kernel"].dtype == jnp.float32
  p_low = {"kernel": params["kernel"][1:], "bias": params["bias"]}

  @jax.jit
  def compute():
    return (layer.apply({"params": params}, x),
            gd.gaussian_derivative_conv(x, params["kernel"], params["bias"], layer.sigmas),
            low.apply({"params": p_low}, x), low.clone(dtype=None).apply({"params": p_low}, x))
  y, y_pure, y_low, y_ref = compute()
  assert y.shape == (2, 4, 20, 20, 5) and y.dtype == jnp.float32
  np.testing.assert_array_equal(y, y_pure)
  # bfloat16: the jet is computed in float32 inside and rounded once, then combined in bfloat16;
  # measured 0.004 of max|y| (0.15 if the smoothing and differences ran in bfloat16).
  assert y_low.dtype == jnp.bfloat16 and rel_err(y_low.astype(jnp.float32), y_ref) <= 0.03
  # A second layer takes the first one's scale axis.
  second = layer.clone(features=2)
  assert jax.eval_shape(lambda: second.init_with_output(rng, y)[0]).shape == (2, 4, 20, 20, 2)
  with pytest.raises(ValueError, match="3 scale channels but 4 sigmas"):
    jax.eval_shape(second.init, rng, y[:, :3])
  with pytest.raises(ValueError, match=r"weights must be \(6, 3, O\)"):
    gd.gaussian_derivative_conv(x, jnp.zeros((5, 3, 2)), None, (1.0,))
  with pytest.raises(ValueError, match="pass halfwidth"):
    jax.jit(lambda s: gd.gaussian_derivative_conv(x, jnp.zeros((6, 3, 2)), None, s))(
        jnp.ones(2))


def test_pool_scales():
  y = jnp.asarray(np.random.default_rng(0).normal(size=(2, 3, 4, 4, 2)))
  np.testing.assert_array_equal(gd.pool_scales(y, "max"), np.max(np.asarray(y), axis=1))
  assert rel_err(gd.pool_scales(y, "avg"), np.mean(np.asarray(y), axis=1)) <= 1e-6
  assert gd.pool_scales(y.astype(jnp.bfloat16), "avg").dtype == jnp.bfloat16
  with pytest.raises(ValueError, match="max"):
    gd.pool_scales(y, "median")


def test_docstring_examples():
  import doctest  # pylint: disable=g-import-not-at-top
  result = doctest.testmod(gd)
  assert result.attempted >= 5 and result.failed == 0
