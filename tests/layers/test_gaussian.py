"""Discrete scale-space kernels and operators against pyscsp 1.0.3 (tests/fixtures/peers).

Fixtures: pyscsp_kernels_1d.npz, pyscsp_kernels_2d.npz and pyscsp_image.npz are float64 numpy
outputs; they are compared in float64 (``jax.enable_x64(True)`` as a context, inside the test
only) at 1e-12 of max|ref|: both sides evaluate the same closed forms, so only rounding differs
(measured <= 5e-14; the discrete analogue's inverse DFT against scipy's ``ive`` included).
Float32 outputs are compared with the float64 fixtures at 2e-6 (a few float32 ulps of the peak,
measured <= 1.4e-6, linintgauss at sigma 4).
pyscsp_torch_kernels.npz is float32 torch: values at 2e-6, gradients of sum(kernel * r) in sigma
at 2e-5 relative, except where torch's own float32 arithmetic is the larger error (stated there).
"""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special

from stir_jax.layers import gaussian
from tests.helpers import rel_err

SIGMAS = (0.5, 1.0, 2.0, 4.0)
F64_TOL = 1e-12
F32_TOL = 2e-6
GRAD_TOL = 2e-5
FIVE_JET = ("Lx", "Ly", "Lxx", "Lxy", "Lyy")
ORDERS_2D = ((1, 0), (0, 1), (2, 0), (1, 1), (0, 2))


def _key(sigma):
  return f"s{sigma:g}"


@pytest.fixture(scope="module")
def k1d(fixtures_dir):
  with np.load(fixtures_dir / "peers" / "pyscsp_kernels_1d.npz") as f:
    return {k: f[k] for k in f.files}


@pytest.fixture(scope="module")
def k2d(fixtures_dir):
  with np.load(fixtures_dir / "peers" / "pyscsp_kernels_2d.npz") as f:
    return {k: f[k] for k in f.files}


@pytest.fixture(scope="module")
def img(fixtures_dir):
  with np.load(fixtures_dir / "peers" / "pyscsp_image.npz") as f:
    return {k: f[k] for k in f.files}


@pytest.fixture(scope="module")
def torch_k(fixtures_dir):
  with np.load(fixtures_dir / "peers" / "pyscsp_torch_kernels.npz") as f:
    return {k: f[k] for k in f.files}


def _once(fn):
  """Run fn() as one compiled program: one compilation per test instead of one per operation
  (the sigma and N inside are Python constants, so the host-side truncation rules still run).
  Returns numpy arrays, so float64 results are compared in float64 outside the x64 context."""
  return jax.tree.map(np.asarray, jax.jit(fn)())


def _grad_rel(ours, ref):
  return abs(float(ours) - float(ref)) / abs(float(ref))


# --------------------------------------------------------------------------------------------------
# The discrete analogue of the Gaussian.
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("sigma", SIGMAS)
def test_discgauss_matches_pyscsp(k1d, sigma):
  for D, name in ((1, "discgauss"), (2, "discgauss_D2")):
    ref = k1d[f"{name}/{_key(sigma)}"]
    # The truncation rule gives exactly pyscsp's length (not renormalised: sum 1 - O(eps)).
    assert gaussian.discgauss_halfwidth(sigma, 1e-8, D) == (len(ref) - 1) // 2
    with jax.enable_x64(True):
      ours = gaussian.discgauss_kernel(sigma, epsilon=1e-8, D=D, dtype=jnp.float64)
      assert ours.dtype == jnp.float64 and ours.shape == ref.shape
      assert rel_err(ours, ref) <= F64_TOL
    ours32 = gaussian.discgauss_kernel(sigma, epsilon=1e-8, D=D)
    assert ours32.dtype == jnp.float32 and rel_err(ours32, ref) <= F32_TOL
    assert 1 - 1e-8 <= ref.sum() < 1


def test_discgauss_is_exact_beyond_the_fixture_sigmas():
  """Against scipy's ive on wide supports, small to large sigma, and total mass 1."""
  with jax.enable_x64(True):
    for sigma in (0.05, 0.3, 3.3, 12.0):
      N = int(8 * sigma) + 4
      ours = gaussian.discgauss_kernel(sigma, N, dtype=jnp.float64)
      ref = special.ive(np.abs(np.arange(-N, N + 1)), sigma**2)
      assert rel_err(ours, ref) <= F64_TOL
      assert abs(float(ours.sum()) - 1) <= 1e-12
      # Second moment = sigma^2 exactly (the discrete analogue has no scale offset).
      n = np.arange(-N, N + 1)
      assert abs(float((n**2 * ours).sum()) - sigma**2) <= 1e-10 * max(1, sigma**2)


def test_discgauss_sigma_gradient_is_the_discrete_heat_equation():
  """dT/dt = (T(n-1) - 2T(n) + T(n+1)) / 2, so dT/dsigma = sigma * second difference."""
  with jax.enable_x64(True):
    for sigma in (0.4, 1.7, 5.0):
      N = int(8 * sigma) + 4
      r = np.cos(np.arange(2 * N + 3))
      kernel = lambda s, N=N: gaussian.discgauss_kernel(s, N + 1, dtype=jnp.float64)

      @jax.jit
      def compute(s, kernel=kernel, r=r):
        # sigma is traced here (N static); forward and reverse mode.
        return (jax.jacfwd(kernel)(s), kernel(s),
                jax.grad(lambda t: jnp.sum(kernel(t) * r))(s))
      jac, T, grad = jax.tree.map(np.asarray, compute(jnp.float64(sigma)))
      expected = sigma * (T[:-2] - 2 * T[1:-1] + T[2:])
      assert rel_err(jac[1:-1], expected) <= 1e-11
      assert abs(float(grad) - float(jac @ r)) <= 1e-11 * max(1.0, abs(float(jac @ r)))


def test_discgauss_semigroup():
  with jax.enable_x64(True):
    a = gaussian.discgauss_kernel(1.2, 20, dtype=jnp.float64)
    b = gaussian.discgauss_kernel(0.9, 20, dtype=jnp.float64)
    ab = gaussian.discgauss_kernel(math.sqrt(1.2**2 + 0.9**2), 40, dtype=jnp.float64)
    assert rel_err(jnp.convolve(a, b), ab) <= 1e-12


def test_docstring_examples():
  import doctest  # pylint: disable=g-import-not-at-top
  result = doctest.testmod(gaussian)
  assert result.attempted >= 7 and result.failed == 0


def test_traced_sigma_needs_explicit_halfwidth():
  with pytest.raises(ValueError, match="pass the half-width N"):
    jax.jit(gaussian.discgauss_kernel)(1.0)
  with pytest.raises(ValueError, match="pass the half-width N"):
    jax.grad(lambda s: gaussian.sampled_gauss_kernel(s).sum())(1.0)


# --------------------------------------------------------------------------------------------------
# Sampled and integrated Gaussians.
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("sigma", SIGMAS)
def test_smoothing_kernels_match_pyscsp(k1d, sigma):
  methods = gaussian.SMOOTHING_METHODS[1:]
  with jax.enable_x64(True):
    ours64 = _once(lambda: {m: gaussian.gauss_kernel(sigma, m, dtype=jnp.float64) for m in methods})
  ours32 = _once(lambda: {m: gaussian.gauss_kernel(sigma, m) for m in methods})
  for method in methods:
    ref = k1d[f"{method}/{_key(sigma)}"]
    assert gaussian.gauss_halfwidth(sigma, 1e-8, 1) == (len(ref) - 1) // 2
    assert ours64[method].dtype == np.float64 and ours64[method].shape == ref.shape
    assert rel_err(ours64[method], ref) <= F64_TOL, method
    # Float32 against the float64 truth: erfc tails and the cancellation-free linintgauss form.
    assert rel_err(ours32[method], ref) <= F32_TOL, method


@pytest.mark.parametrize("sigma", SIGMAS)
def test_torch_smoothing_kernels_and_sigma_gradients(torch_k, sigma):
  k = _key(sigma)
  N = gaussian.gauss_halfwidth(sigma, 0.01, 1, factor=1.0)  # torchscsp: factor 1.0, eps 0.01
  methods = gaussian.SMOOTHING_METHODS[1:]

  def compute():
    out = {}
    for m in methods:
      fn = lambda s, m=m: gaussian.gauss_kernel(s, m, N, factor=1.0)
      r = torch_k[f"{m}_r/{k}"]
      out[m] = (fn(jnp.float32(sigma)), jax.grad(lambda s: jnp.sum(fn(s) * r))(jnp.float32(sigma)))
    return out
  ours_all = _once(compute)
  for method in methods:
    ref = torch_k[f"{method}/{k}"]
    assert len(ref) == 2 * N + 1
    # torchscsp evaluates linintgauss as x-sized terms that cancel to the tail: in float32 that
    # is 1.2e-5 of the peak at sigma 4 (against pyscsp's float64 value, ours is within 1.4e-6,
    # test above), and its sigma gradient carries 2.3e-5 relative noise at sigma 2.
    lin = method == "linintgauss"
    kernel, grad = ours_all[method]
    assert rel_err(kernel, ref) <= (2e-5 if lin else F32_TOL), method
    assert _grad_rel(grad, torch_k[f"{method}_dsigma/{k}"]) <= (5e-5 if lin else GRAD_TOL), method
  ours = gaussian.discgauss_kernel(sigma, epsilon=0.01)
  ref = torch_k[f"discgauss/{k}"]
  assert ours.shape == ref.shape and rel_err(ours, ref) <= F32_TOL


# --------------------------------------------------------------------------------------------------
# Derivative kernels.
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("sigma", SIGMAS)
def test_difference_kernels_match_pyscsp(k1d, sigma):
  """Smoothing + central differences. Ours is the exact composite on every tap; pyscsp
  differences the -N..N kernel with scipy's reflect boundary, which changes the two end taps by
  the kernel's tail (<= 4e-6 of max|ref|, at sigma 4 order 2). Interior taps: 1e-12; all taps:
  1e-5; pyscsp's own boundary (symmetric padding, then differences) reproduced at 1e-12."""
  k = _key(sigma)
  N = int(k1d[f"N/{k}"])
  assert N == math.ceil(5 * sigma) + 3
  names = (("discgaussder", "discgauss"), ("samplgaussdiff", "samplgauss"),
           ("intgaussdiff", "intgauss"))

  def compute():
    out = {}
    for name, smoothing in names:
      smooth = gaussian.difference_kernel(0, sigma, N, smoothing, dtype=jnp.float64)
      for order in range(3):
        exact = gaussian.difference_kernel(order, sigma, N, smoothing, dtype=jnp.float64)
        reflect = gaussian.central_difference(
            gaussian.pad_symmetric(smooth, 1, 0) if order else smooth, order)
        out[f"{name}{order}"] = (exact, reflect)
    return out
  with jax.enable_x64(True):
    ours_all = _once(compute)
  for key, (ours, reflect) in ours_all.items():
    ref = k1d[f"{key}/{k}"]
    assert ours.shape == ref.shape
    scale = np.abs(ref).max()
    assert np.abs(ours[1:-1] - ref[1:-1]).max() / scale <= F64_TOL, key
    assert rel_err(ours, ref) <= 1e-5, key
    assert rel_err(reflect, ref) <= F64_TOL, key


@pytest.mark.parametrize("sigma", SIGMAS)
def test_gauss_derivative_kernels_match_pyscsp(k1d, sigma):
  k = _key(sigma)
  N = int(k1d[f"N/{k}"])
  with jax.enable_x64(True):
    ours = _once(lambda: {
        f"{m}{o}": gaussian.gauss_derivative_kernel(o, sigma, N, m, dtype=jnp.float64)
        for o in range(3) for m in ("samplgaussder", "intgaussder")})
  for key, value in ours.items():
    assert rel_err(value, k1d[f"{key}/{k}"]) <= F64_TOL, key


@pytest.mark.parametrize("sigma", SIGMAS)
def test_torch_gauss_derivative_kernels_and_sigma_gradients(torch_k, sigma):
  k = _key(sigma)
  N = int(torch_k[f"N/{k}"])
  assert N == math.ceil(4 * sigma) + 2

  def compute():
    out = {}
    for order in range(3):
      for method in ("samplgaussder", "intgaussder"):
        key = f"{method}{order}"
        fn = lambda s, o=order, m=method: gaussian.gauss_derivative_kernel(o, s, N, m)
        r = torch_k[f"{key}_r/{k}"]
        out[key] = (fn(jnp.float32(sigma)),
                    jax.grad(lambda s: jnp.sum(fn(s) * r))(jnp.float32(sigma)))
    return out
  for key, (kernel, grad) in _once(compute).items():
    assert rel_err(kernel, torch_k[f"{key}/{k}"]) <= F32_TOL, key
    assert _grad_rel(grad, torch_k[f"{key}_dsigma/{k}"]) <= GRAD_TOL, key


# --------------------------------------------------------------------------------------------------
# Masks, jet2mask, and the 2-D operators.
# --------------------------------------------------------------------------------------------------


def test_difference_masks(k1d, torch_k):
  for name in gaussian.MASK_NAMES:
    ours = np.asarray(gaussian.difference_mask(name))
    np.testing.assert_array_equal(ours, torch_k[f"mask3x3/{name}"])
    ref = k1d[f"mask/{name}"]  # minimal shapes (1, 3), (3, 1) or (3, 3)
    rows = slice(None) if ref.shape[0] == 3 else slice(1, 2)
    cols = slice(None) if ref.shape[1] == 3 else slice(1, 2)
    np.testing.assert_array_equal(ours[rows, cols], ref)
    assert np.count_nonzero(ours) == np.count_nonzero(ref)


@pytest.mark.parametrize("sigma", SIGMAS)
def test_jet2mask_and_gradients(torch_k, sigma):
  k = _key(sigma)
  C, r = torch_k[f"jet2mask_C/{k}"], torch_k[f"jet2mask_r/{k}"]
  mask, (dC, ds) = _once(lambda: (gaussian.jet2mask(C, sigma), jax.grad(
      lambda c, s: jnp.sum(gaussian.jet2mask(c, s) * r), argnums=(0, 1))(
          jnp.asarray(C), jnp.float32(sigma))))
  assert rel_err(mask, torch_k[f"jet2mask/{k}"]) <= F32_TOL
  assert rel_err(dC, torch_k[f"jet2mask_dC/{k}"]) <= F32_TOL
  assert _grad_rel(ds, torch_k[f"jet2mask_dsigma/{k}"]) <= F32_TOL
  # Batched coefficients give a batch of masks.
  assert gaussian.jet2mask(jnp.stack([C, 2 * C]), sigma).shape == (2, 3, 3)


@pytest.mark.parametrize("sigma", (1.0, 2.0))
def test_image_scale_space_njet_and_gauss_derivatives(img, sigma):
  k = _key(sigma)
  image = img["image"]  # (24, 20): not square, catches x/y mix-ups

  def compute():
    x = jnp.asarray(image)
    out = {f"L_{m}": gaussian.scale_space(x, sigma, m) for m in gaussian.SMOOTHING_METHODS}
    for normalize, suffix in ((False, "discgauss"), (True, "discgaussvar")):
      jet = gaussian.njet(x, sigma, normalize=normalize)
      jet.update(gaussian.njet_invariants(jet))
      out.update({f"{name}_{suffix}": jet[name]
                  for name in FIVE_JET + ("Laplace", "detHessian", "Lv")})
    for method in ("samplgaussder", "intgaussder"):
      for xo, yo in ORDERS_2D:
        out[f"{method}{xo}{yo}"] = gaussian.gauss_derivative_conv(x, xo, yo, sigma, method)
    return out
  with jax.enable_x64(True):
    ours = _once(compute)
  assert len(ours) == 31
  for key, value in ours.items():
    assert value.dtype == np.float64 and rel_err(value, img[f"{key}/{k}"]) <= F64_TOL, key


@pytest.mark.parametrize("sigma", SIGMAS)
def test_impulse_responses(k2d, sigma):
  k = _key(sigma)
  n = k2d[f"impulse_L/{k}"].shape[0]
  delta = np.zeros((n, n))
  delta[n // 2, n // 2] = 1

  def compute():
    x = jnp.asarray(delta)
    out = gaussian.njet(x, sigma)
    out.update({f"samplgaussder{xo}{yo}": gaussian.gauss_derivative_conv(x, xo, yo, sigma)
                for xo, yo in ORDERS_2D})
    return out
  with jax.enable_x64(True):
    ours = _once(compute)
  assert len(ours) == 11
  for key, value in ours.items():
    assert rel_err(value, k2d[f"impulse_{key}/{k}"]) <= F64_TOL, key


def test_njet_float32_batched_jit_and_sigma_gradient(img):
  """Float32, leading batch axes, jit over a traced sigma (N static), and a finite-difference
  check of d/dsigma of the scale-normalised jet."""
  x = jnp.stack([jnp.asarray(img["image"], jnp.float32)] * 2)  # (2, 24, 20)
  N = gaussian.discgauss_halfwidth(2.0, 1e-8, 2)
  fn = jax.jit(lambda s: gaussian.njet(x, s, normalize=True, N=N))
  jet = fn(jnp.float32(2.0))
  # 5e-5: the second differences cancel L (~0.5) down to Lyy (~0.02 before the sigma^2 factor),
  # which amplifies float32 rounding about 25-fold (measured 1.1e-5 for Lyy).
  for name in FIVE_JET:
    assert jet[name].shape == x.shape and jet[name].dtype == jnp.float32
    assert rel_err(jet[name][1], img[f"{name}_discgaussvar/s2"]) <= 5e-5, name
  # Reverse mode in float32 against a float64 central difference (step 1e-4: truncation error
  # ~1e-8 relative, rounding ~1e-12), at 2e-4: float32 rounding of the jet, amplified as above.
  w = np.sin(np.arange(x[0].size)).reshape(x.shape[1:])
  grad = jax.jit(jax.grad(lambda s: sum(jnp.sum(v[0] * w.astype(np.float32))
                                        for v in fn(s).values())))(jnp.float32(2.0))
  with jax.enable_x64(True):
    image = jnp.asarray(img["image"])
    loss64 = lambda s: sum(jnp.sum(v * w) for v in gaussian.njet(image, s, normalize=True,
                                                                  N=N).values())
    fd = _once(lambda: (loss64(2.0 + 1e-4) - loss64(2.0 - 1e-4)) / 2e-4)
  assert abs(float(grad) - float(fd)) <= 2e-4 * abs(float(fd))
