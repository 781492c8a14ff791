"""Lindeberg's discrete scale space: the building blocks of Gaussian derivative networks.

Pure JAX functions for the kernels and operators of Gaussian-derivative scale-channel networks
(Lindeberg 2022, "Scale-covariant and scale-invariant Gaussian derivative networks", JMIV 64:223;
Perzanowski & Lindeberg 2024/2025), checked against Lindeberg's toolbox pyscsp 1.0.3
(``discscsp``, ``gaussders``, ``torchscsp``; see tests/fixtures/peers/README.md):

* 1-D smoothing kernels on taps ``-N..N`` (Lindeberg 2023, arXiv:2311.11317, "Discrete
  approximations of Gaussian smoothing and Gaussian derivatives"): the discrete analogue of the
  Gaussian `discgauss_kernel`, and the sampled, normalised sampled, pixel-integrated and
  linearly-integrated Gaussians. All are differentiable in ``sigma`` (also the discrete analogue,
  which pyscsp's torch interface cannot differentiate: here it comes from its closed-form Fourier
  transform).
* 1-D derivative kernels: smoothing followed by central differences (`difference_kernel`), and
  sampled or pixel-integrated Gaussian derivatives (`gauss_derivative_kernel`).
* 2-D operators on images ``(..., height, width)``: separable smoothing (`scale_space`), the
  N-jet up to order 2 by central differences (`njet`), separable Gaussian derivative filtering
  (`gauss_derivative_conv`), and the 3x3 mask of a Gaussian derivative layer (`jet2mask`).

Conventions (pyscsp's): arrays are (row, col) = (y, x); x runs right along columns and **y points
up**, towards row 0. The image boundary is scipy.ndimage's ``reflect`` mode, which repeats the
edge sample (``numpy.pad(mode="symmetric")``). ``epsilon`` bounds the relative truncation error
over a ``D``-dimensional domain; one 1-D factor of a separable filter gets
``eps_1 = 1 - (1 - epsilon) ** (1 / D)``.

Half-widths ``N`` fix array shapes, so they are static Python ints: the ``*_halfwidth`` rules run
on the host from a concrete ``sigma``. To differentiate in ``sigma`` (or jit over it), pass ``N``
explicitly and ``sigma`` may then be traced.

Equivariance: convolving with these kernels commutes with integer translations exactly (up to the
boundary). Scale covariance is that of the continuous Gaussian scale space, approximate on the
grid; the discrete analogue is the only kernel here with exact discrete semigroup
``T(.; t1) * T(.; t2) = T(.; t1 + t2)``.

Example:
  >>> [round(float(v), 4) for v in discgauss_kernel(1.0, N=2)]  # e^-1 I_n(1), n = -2..2
  [0.0499, 0.2079, 0.4658, 0.2079, 0.0499]
"""
from __future__ import annotations

import functools
import math
from typing import Optional, Union

import jax
import jax.numpy as jnp
from jax import lax
import numpy as np
from scipy import special

from stir_jax.layers.dtypes import DEFAULT_PRECISION, Dtype, PrecisionLike, canonical_precision

ArrayLike = Union[jax.Array, np.ndarray, float]

#: pyscsp's names of the five smoothing methods, as `gauss_kernel` takes them.
SMOOTHING_METHODS = ("discgauss", "samplgauss", "normsamplgauss", "intgauss", "linintgauss")
#: The central-difference masks of `difference_mask` (order of `jet2mask`'s coefficients after C0).
MASK_NAMES = ("dx", "dy", "dxx", "dxy", "dyy")
#: Derivative orders (x, y) of the N-jet entries returned by `njet`.
NJET_ORDERS = {"L": (0, 0), "Lx": (1, 0), "Ly": (0, 1), "Lxx": (2, 0), "Lxy": (1, 1), "Lyy": (0, 2)}


# --------------------------------------------------------------------------------------------------
# Truncation rules (host side: they fix shapes).
# --------------------------------------------------------------------------------------------------


def truncation_epsilon_1d(epsilon: float, D: int = 1) -> float:
  """The 1-D error bound of one factor of a separable D-dimensional filter: 1 - (1-eps)^(1/D).

  Reproduces pyscsp ``discscsp.truncerrtransf``.

  >>> round(truncation_epsilon_1d(0.02, 2), 6)
  0.010051
  """
  return 1.0 - (1.0 - epsilon) ** (1.0 / D)


def _gaussfiltsize(sigma: float, epsilon: float, D: int) -> float:
  """sqrt(2 sigma^2) erfcinv(eps_1), computed in pyscsp's order so that ceilings agree."""
  s = sigma * sigma
  return math.sqrt(2 * s) * float(special.erfcinv(truncation_epsilon_1d(epsilon, D)))


def gauss_halfwidth(sigma: float, epsilon: float = 1e-8, D: int = 1, factor: float = 1.1) -> int:
  """Half-width of the sampled and integrated Gaussians, ceil(factor sqrt(2 sigma^2) erfcinv(eps1)).

  ``factor`` is 1.1 in pyscsp ``discscsp.make1D{sampl,normsampl,int,linint}gaussfilter`` and 1.0
  in ``torchscsp``'s versions of them (whose default epsilon is 0.01).

  >>> gauss_halfwidth(1.0), gauss_halfwidth(4.0, 0.01, factor=1.0)
  (7, 11)
  """
  return int(math.ceil(factor * _gaussfiltsize(float(sigma), epsilon, D)))


def discgauss_halfwidth(sigma: float, epsilon: float = 1e-8, D: int = 1) -> int:
  """Smallest N with sum_{|n|<=N} T(n; sigma^2) >= 1 - eps_1 (discrete analogue; not renormalised).

  Reproduces pyscsp ``discscsp.make1Ddiscgaussfilter``'s truncation (``truncfilter`` over at most
  ``ceil(1 + 1.5 sqrt(2 sigma^2) erfcinv(eps_1))`` taps, summed in its order with scipy's ``ive``).

  >>> discgauss_halfwidth(1.0), discgauss_halfwidth(1.0, D=2)
  (8, 8)
  """
  sigma = float(sigma)
  longsize = math.ceil(1 + 1.5 * _gaussfiltsize(sigma, epsilon, D))
  half = special.ive(np.arange(0, longsize + 1), sigma * sigma)
  eps1 = truncation_epsilon_1d(epsilon, D)
  total, i = half[0], 1
  while total < 1 - eps1 and i < len(half):
    total += 2 * half[i]
    i += 1
  return i - 1


def gaussder_halfwidth(order: int, sigma: float, epsilon: float = 1e-4, D: int = 2) -> int:
  """Half-width of a Gaussian derivative kernel of ``order`` for error bound ``epsilon`` in D dims.

  Reproduces pyscsp ``gaussders.N_from_epsilon_2D`` (D=2) / ``N_from_epsilon_1D`` (D=1):
  ``ceil(gaussfiltsize)`` for order 0, else ``1 + order + ceil(gaussfiltsize(eps_1 / 2^order))``.

  >>> gaussder_halfwidth(1, 1.0)
  7
  """
  eps1 = truncation_epsilon_1d(epsilon, D)
  if order == 0:
    return int(math.ceil(_gaussfiltsize(float(sigma), eps1, 1)))
  return 1 + order + int(math.ceil(_gaussfiltsize(float(sigma), eps1 / 2**order, 1)))


def _concrete(sigma) -> float:
  try:
    return float(sigma)
  except (jax.errors.ConcretizationTypeError, jax.errors.TracerArrayConversionError) as e:
    raise ValueError("sigma is traced (jit/grad): pass the half-width N explicitly") from e


def _compute_dtype(dtype: Dtype):
  """At least float32 inside (the FFT, erf, exp); float64 when asked for (and x64 is on)."""
  return jnp.promote_types(dtype, jnp.float32)


def _taps(N: int, dtype) -> jax.Array:
  return jnp.arange(-N, N + 1, dtype=dtype)


# --------------------------------------------------------------------------------------------------
# 1-D smoothing kernels.
# --------------------------------------------------------------------------------------------------


def discgauss_fft_size(N: int) -> int:
  """DFT length for `discgauss_kernel`: the smallest power of two >= 8N + 64.

  Sampling the DTFT exp(t (cos w - 1)) at L points and inverting gives the L-periodised kernel
  sum_m T(n + mL; t), so tap |n| <= N is off by the mass of T beyond L - N >= 7N + 64. T is the
  law of a difference of two Poisson(t/2) variables, whose Chernoff bound is
  P(|X| >= m) <= 2 exp(t (sqrt(1 + (m/t)^2) - 1) - m asinh(m/t)) (< exp(-m^2 / (2 t + 2m/3))).
  For any truncation that keeps N >= 2 sigma (pyscsp's rules give N ~ 6 sigma at eps 1e-8 and
  2.6 sigma at 1e-2), m >= 14 sigma + 64: the aliased mass is below exp(-60) ~ 1e-26 for every
  sigma, far under float64 resolution of the peak. Only N < sigma (a kernel cut inside its own
  standard deviation) would need a larger ``fft_size``.

  >>> discgauss_fft_size(8)
  128
  """
  return 1 << (8 * int(N) + 64 - 1).bit_length()


def discgauss_kernel(sigma: ArrayLike, N: Optional[int] = None, *, epsilon: float = 1e-8,
                     D: int = 1, dtype: Dtype = jnp.float32,
                     fft_size: Optional[int] = None) -> jax.Array:
  """The discrete analogue of the Gaussian T(n; t) = e^{-t} I_n(t), t = sigma^2, on taps -N..N.

  Exact and differentiable in sigma: T's DTFT is exp(t (cos w - 1)) = exp(-2 t sin^2(w/2)),
  sampled on ``fft_size`` points (`discgauss_fft_size`) and inverted by a real inverse DFT; the
  aliasing that this periodisation adds is below float64 precision. Lindeberg (1990), "Scale-space
  for discrete signals", PAMI 12(3); reproduces pyscsp ``discscsp.make1Ddiscgaussfilter(sigma,
  epsilon, D)`` (scipy ``ive``) when ``N`` is None: ``N = discgauss_halfwidth(sigma, epsilon,
  D)``, no renormalisation (the sum is 1 - O(epsilon)).

  Args:
    sigma: scalar standard deviation (traceable when ``N`` is given).
    N: half-width; None uses the truncation rule (needs a concrete sigma).
    epsilon, D: truncation error bound over a D-dimensional domain (only when N is None).
    dtype: output dtype; computed in at least float32.
    fft_size: DFT length; None uses `discgauss_fft_size(N)`.

  Returns:
    (2N + 1,) kernel, symmetric, tap n at index n + N.

  >>> float(discgauss_kernel(2.0, N=30).sum())  # doctest: +ELLIPSIS
  1.0...
  """
  if N is None:
    N = discgauss_halfwidth(_concrete(sigma), epsilon, D)
  L = discgauss_fft_size(N) if fft_size is None else int(fft_size)
  if L < 2 * N + 1:
    raise ValueError(f"fft_size {L} < 2N + 1 = {2 * N + 1}")
  return _discgauss_core(sigma, N, L, _compute_dtype(dtype)).astype(dtype)


@functools.partial(jax.jit, static_argnames=("N", "L", "cdt"))
def _discgauss_core(sigma, N: int, L: int, cdt):
  t = jnp.asarray(sigma, cdt) ** 2
  w = 2 * jnp.pi * jnp.arange(L // 2 + 1, dtype=cdt) / L
  spectrum = jnp.exp(-2 * t * jnp.sin(w / 2) ** 2)
  half = jnp.fft.irfft(spectrum, n=L)[:N + 1]  # T(0..N), T even in n
  return jnp.concatenate([half[:0:-1], half])


def _pixel_integral(x, sigma):
  """Integral of the Gaussian over [x - 1/2, x + 1/2], from erfc of |x| so the tails keep their
  relative precision (the erf difference of pyscsp loses it where erf is close to 1)."""
  c = math.sqrt(2) * sigma
  return 0.5 * (lax.erfc((jnp.abs(x) - 0.5) / c) - lax.erfc((jnp.abs(x) + 0.5) / c))


def _gauss(x, sigma):
  return jnp.exp(-(x**2) / (2 * sigma**2)) / (math.sqrt(2 * math.pi) * sigma)


def _continuous(method, sigma, N, epsilon, D, factor, dtype):
  """Host side of the four continuous-Gaussian kernels: the static N, then one compiled core."""
  if N is None:
    N = gauss_halfwidth(_concrete(sigma), epsilon, D, factor)
  return _continuous_core(sigma, method, int(N), _compute_dtype(dtype)).astype(dtype)


@functools.partial(jax.jit, static_argnames=("method", "N", "cdt"))
def _continuous_core(sigma, method: str, N: int, cdt):
  x, s = _taps(N, cdt), jnp.asarray(sigma, cdt)
  if method == "samplgauss":
    return _gauss(x, s)
  if method == "normsamplgauss":
    g = _gauss(x, s)
    return g / g.sum()
  if method == "intgauss":
    return _pixel_integral(x, s)
  # linintgauss. F(x) = x Phi(x / sigma) + sigma^2 g(x) has F'' = g, so the kernel is F's second
  # difference. pyscsp evaluates it as written, which cancels x-sized terms down to the tail values
  # (about 2e-5 of the peak in float32 at sigma = 4). Here F = H + max(x, 0) with the even,
  # decaying H(x) = -|x| erfc(|x| / (sqrt(2) sigma)) / 2 + sigma^2 g(x), and the second difference
  # of max(n, 0) is [n == 0]: the same numbers without the cancellation.
  h = lambda y: (-jnp.abs(y) * 0.5 * lax.erfc(jnp.abs(y) / (math.sqrt(2) * s))
                 + s**2 * _gauss(y, s))
  return h(x + 1) - 2 * h(x) + h(x - 1) + (x == 0).astype(cdt)


def sampled_gauss_kernel(sigma: ArrayLike, N: Optional[int] = None, *, epsilon: float = 1e-8,
                         D: int = 1, factor: float = 1.1, dtype: Dtype = jnp.float32) -> jax.Array:
  """The sampled Gaussian g(n; sigma) = exp(-n^2 / (2 sigma^2)) / (sqrt(2 pi) sigma), taps -N..N.

  Reproduces pyscsp ``discscsp.make1Dsamplgaussfilter`` (``factor`` 1.1) and
  ``torchscsp.make1Dsamplgaussfilter`` (``factor`` 1.0); N defaults to `gauss_halfwidth`.
  Differentiable in sigma. Returns (2N + 1,).
  """
  return _continuous("samplgauss", sigma, N, epsilon, D, factor, dtype)


def normalized_sampled_gauss_kernel(sigma: ArrayLike, N: Optional[int] = None, *,
                                    epsilon: float = 1e-8, D: int = 1, factor: float = 1.1,
                                    dtype: Dtype = jnp.float32) -> jax.Array:
  """The sampled Gaussian divided by its sum over taps -N..N (unit l1 norm). Returns (2N + 1,).

  Reproduces pyscsp ``make1Dnormsamplgaussfilter`` (discscsp: factor 1.1; torchscsp: 1.0).
  """
  return _continuous("normsamplgauss", sigma, N, epsilon, D, factor, dtype)


def integrated_gauss_kernel(sigma: ArrayLike, N: Optional[int] = None, *, epsilon: float = 1e-8,
                            D: int = 1, factor: float = 1.1,
                            dtype: Dtype = jnp.float32) -> jax.Array:
  """The Gaussian integrated over each pixel [n - 1/2, n + 1/2]; adds variance 1/12.

  Lindeberg (1993), Scale-Space Theory in Computer Vision, eq. (3.89); reproduces pyscsp
  ``make1Dintgaussfilter`` (discscsp: factor 1.1; torchscsp: 1.0). Returns (2N + 1,).
  """
  return _continuous("intgauss", sigma, N, epsilon, D, factor, dtype)


def linearly_integrated_gauss_kernel(sigma: ArrayLike, N: Optional[int] = None, *,
                                     epsilon: float = 1e-8, D: int = 1, factor: float = 1.1,
                                     dtype: Dtype = jnp.float32) -> jax.Array:
  """The Gaussian integrated against the triangle 1 - |x - n| on [n-1, n+1]; adds variance 1/6.

  Closed form of Lindeberg (1993), eq. (3.90): with E(x) = x Phi(x / sigma),
  E(n+1) - 2E(n) + E(n-1) + sigma^2 (g(n+1) - 2g(n) + g(n-1)). Reproduces pyscsp
  ``make1Dlinintgaussfilter`` (discscsp: factor 1.1; torchscsp: 1.0). Returns (2N + 1,).
  """
  return _continuous("linintgauss", sigma, N, epsilon, D, factor, dtype)


def gauss_kernel(sigma: ArrayLike, method: str = "discgauss", N: Optional[int] = None, *,
                 epsilon: float = 1e-8, D: int = 1, factor: float = 1.1,
                 dtype: Dtype = jnp.float32) -> jax.Array:
  """One of the five 1-D smoothing kernels by pyscsp's name (`SMOOTHING_METHODS`). Returns (2N+1,).

  Reproduces pyscsp ``discscsp.make1D<method>filter(sigma, epsilon, D)``; ``factor`` applies to
  the four continuous-Gaussian methods only (discgauss has its own truncation rule).
  """
  if method == "discgauss":
    return discgauss_kernel(sigma, N, epsilon=epsilon, D=D, dtype=dtype)
  fns = {"samplgauss": sampled_gauss_kernel, "normsamplgauss": normalized_sampled_gauss_kernel,
         "intgauss": integrated_gauss_kernel, "linintgauss": linearly_integrated_gauss_kernel}
  if method not in fns:
    raise ValueError(f"unknown smoothing method {method!r}; expected one of {SMOOTHING_METHODS}")
  return fns[method](sigma, N, epsilon=epsilon, D=D, factor=factor, dtype=dtype)


# --------------------------------------------------------------------------------------------------
# 1-D derivative kernels.
# --------------------------------------------------------------------------------------------------


def _gauss_derivative(x, sigma, order: int):
  """d^order/dx^order of the Gaussian (probabilists' Hermite form), orders 0..4."""
  u = x / sigma
  poly = {0: 1.0, 1: -u, 2: u**2 - 1, 3: -(u**3 - 3 * u), 4: u**4 - 6 * u**2 + 3}
  if order not in poly:
    raise ValueError(f"derivative order {order} not in 0..4")
  return poly[order] / sigma**order * _gauss(x, sigma)


def sampled_gauss_derivative_kernel(order: int, sigma: ArrayLike, N: int, *,
                                    dtype: Dtype = jnp.float32) -> jax.Array:
  """The o-th derivative of the Gaussian sampled at n = -N..N (o = 0..4). Returns (2N + 1,).

  Reproduces pyscsp ``gaussders.make1Dsamplgaussderfilter`` / ``torchscsp`` (same formulae).
  Differentiable in sigma.
  """
  cdt = _compute_dtype(dtype)
  return _derivative_core(sigma, "samplgaussder", order, int(N), cdt).astype(dtype)


def integrated_gauss_derivative_kernel(order: int, sigma: ArrayLike, N: int, *,
                                       dtype: Dtype = jnp.float32) -> jax.Array:
  """The o-th Gaussian derivative integrated over each pixel: g_{o-1}(n + 1/2) - g_{o-1}(n - 1/2).

  For o = 0 the erf difference of `integrated_gauss_kernel`. Reproduces pyscsp
  ``gaussders.make1Dintgaussderfilter`` / ``torchscsp``. Differentiable in sigma. Returns (2N+1,).
  """
  return _derivative_core(sigma, "intgaussder", order, int(N), _compute_dtype(dtype)).astype(dtype)


@functools.partial(jax.jit, static_argnames=("method", "order", "N", "cdt"))
def _derivative_core(sigma, method: str, order: int, N: int, cdt):
  x, s = _taps(N, cdt), jnp.asarray(sigma, cdt)
  if method == "samplgaussder":
    return _gauss_derivative(x, s, order)
  if order == 0:
    return _pixel_integral(x, s)
  return _gauss_derivative(x + 0.5, s, order - 1) - _gauss_derivative(x - 0.5, s, order - 1)


def gauss_derivative_kernel(order: int, sigma: ArrayLike, N: int, method: str = "samplgaussder",
                            *, dtype: Dtype = jnp.float32) -> jax.Array:
  """``samplgaussder`` / ``intgaussder`` / ``discgaussder`` kernel of ``order`` on taps -N..N.

  Reproduces pyscsp ``torchscsp.make1Dgaussderfilter(order, sigma, N, method)``, except that
  ``discgaussder`` here is the exact equivalent kernel of `difference_kernel` (and differentiable
  in sigma). Returns (2N + 1,).
  """
  if method == "samplgaussder":
    return sampled_gauss_derivative_kernel(order, sigma, N, dtype=dtype)
  if method == "intgaussder":
    return integrated_gauss_derivative_kernel(order, sigma, N, dtype=dtype)
  if method == "discgaussder":
    return difference_kernel(order, sigma, N, "discgauss", dtype=dtype)
  raise ValueError(f"unknown Gaussian derivative method {method!r}")


def central_difference(x: jax.Array, order: int, axis: int = -1) -> jax.Array:
  """Central difference of ``order`` (0, 1: [-1/2, 0, 1/2], 2: [1, -2, 1]) along ``axis``, as a
  correlation on the *valid* part: the output is 2 shorter along ``axis`` for order >= 1.

  Pad first (e.g. `pad_symmetric`) for same-size output. Orders count along the array index; for
  y (pointing up, rows down) the first difference changes sign: see `njet`.
  """
  if order == 0:
    return x
  n = x.shape[axis]
  lo = lax.slice_in_dim(x, 0, n - 2, axis=axis)
  mid = lax.slice_in_dim(x, 1, n - 1, axis=axis)
  hi = lax.slice_in_dim(x, 2, n, axis=axis)
  if order == 1:
    return 0.5 * (hi - lo)
  if order == 2:
    return lo - 2 * mid + hi
  raise ValueError(f"central difference order {order} not in 0..2")


def difference_kernel(order: int, sigma: ArrayLike, N: int, smoothing: str = "discgauss", *,
                      dtype: Dtype = jnp.float32) -> jax.Array:
  """Equivalent kernel of smoothing then a central difference of ``order`` (0..2), taps -N..N.

  The smoothing kernel (``discgauss``, ``samplgauss``, ``normsamplgauss`` or ``intgauss``) is
  built on -(N+1)..N+1 and differenced, so every tap is the exact composite (Lindeberg 1993a,
  "Discrete derivative approximations with scale-space properties", JMIV 3(4)). pyscsp's
  ``discscsp.make1D{discgaussder,samplgaussdiff,normsamplgaussdiff,intgaussdiff}filter(order,
  sigma, N)`` instead differences the kernel on -N..N with scipy's reflect boundary, so its two
  end taps differ from these by |k(N+1) - k(N)| / 2 (order 1) or |k(N+1) - k(N)| (order 2), the
  tail of the kernel; applying `pad_symmetric` before `central_difference` reproduces it exactly.
  For normsamplgauss the normalisation is over -N..N, as in pyscsp.
  Differentiable in sigma. Returns (2N + 1,).
  """
  if smoothing not in ("discgauss", "samplgauss", "normsamplgauss", "intgauss"):
    raise ValueError(f"unknown smoothing {smoothing!r} for difference_kernel")
  return _difference_core(sigma, order, int(N), smoothing, _compute_dtype(dtype)).astype(dtype)


@functools.partial(jax.jit, static_argnames=("order", "N", "smoothing", "cdt"))
def _difference_core(sigma, order: int, N: int, smoothing: str, cdt):
  M = N + (order > 0)
  if smoothing == "discgauss":
    k = discgauss_kernel(sigma, M, dtype=cdt)
  elif smoothing in ("samplgauss", "normsamplgauss"):
    k = sampled_gauss_kernel(sigma, M, dtype=cdt)
    if smoothing == "normsamplgauss":
      k = k / k[M - N:M + N + 1].sum()
  else:
    k = integrated_gauss_kernel(sigma, M, dtype=cdt)
  return central_difference(k, order)


# --------------------------------------------------------------------------------------------------
# 2-D operators on images (..., height, width).
# --------------------------------------------------------------------------------------------------


def pad_symmetric(x: jax.Array, pad: int, axis: int) -> jax.Array:
  """Pad ``axis`` by ``pad`` on both sides repeating the edge sample (scipy ``reflect``)."""
  widths = [(0, 0)] * x.ndim
  widths[axis % x.ndim] = (pad, pad)
  return jnp.pad(x, widths, mode="symmetric")


def correlate1d(x: jax.Array, kernel: jax.Array, axis: int = -1,
                precision: PrecisionLike = DEFAULT_PRECISION) -> jax.Array:
  """Same-size correlation of ``x`` with an odd-length ``kernel`` along ``axis``, reflect boundary.

  out[i] = sum_k kernel[k + N] x[i + k], k = -N..N (scipy.ndimage.correlate1d, mode "reflect").
  One convolution over all other axes folded into the batch, so the program does not grow with
  the kernel or the batch. x: any shape; kernel: (2N + 1,). Returns x's shape.
  """
  N = (kernel.shape[0] - 1) // 2
  xm = jnp.moveaxis(x, axis, -1)
  shape = xm.shape
  xp = pad_symmetric(xm.reshape(-1, 1, shape[-1]), N, -1)
  out = lax.conv_general_dilated(xp, kernel.astype(xp.dtype)[None, None, :], (1,), "VALID",
                                 dimension_numbers=("NCH", "OIH", "NCH"),
                                 precision=canonical_precision(precision))
  return jnp.moveaxis(out.reshape(shape), -1, axis)


def separable_correlate(x: jax.Array, kernel_y: jax.Array, kernel_x: jax.Array,
                        precision: PrecisionLike = DEFAULT_PRECISION) -> jax.Array:
  """Correlate the rows (axis -2) with kernel_y, then the columns (axis -1) with kernel_x."""
  return correlate1d(correlate1d(x, kernel_y, -2, precision), kernel_x, -1, precision)


def scale_space(x: jax.Array, sigma: ArrayLike, method: str = "discgauss", *,
                N: Optional[int] = None, epsilon: float = 1e-8,
                precision: PrecisionLike = DEFAULT_PRECISION) -> jax.Array:
  """Separable Gaussian smoothing L(.; sigma) of images x: (..., height, width), reflect boundary.

  The 1-D kernel is `gauss_kernel(sigma, method, N, epsilon=epsilon, D=2)`. Reproduces pyscsp
  ``discscsp.scspconv(image, sigma, method, epsilon)`` on a 2-D image. Computes in x's dtype
  (at least float32). Returns x's shape.
  """
  N = _smoothing_halfwidth(sigma, method, N, epsilon)
  return _scale_space_core(x, sigma, method, N, canonical_precision(precision))


def _smoothing_halfwidth(sigma, method, N, epsilon):
  """pyscsp's half-width of the D=2 smoothing kernel (a static int) unless N is given."""
  if N is not None:
    return int(N)
  if method == "discgauss":
    return discgauss_halfwidth(_concrete(sigma), epsilon, 2)
  return gauss_halfwidth(_concrete(sigma), epsilon, 2)


@functools.partial(jax.jit, static_argnames=("method", "N", "precision"))
def _scale_space_core(x, sigma, method: str, N: int, precision):
  dtype = _compute_dtype(x.dtype)
  k = gauss_kernel(sigma, method, N, dtype=dtype)
  return separable_correlate(x.astype(dtype), k, k, precision)


def njet(x: jax.Array, sigma: ArrayLike, *, normalize: bool = False, gamma: float = 1.0,
         method: str = "discgauss", N: Optional[int] = None, epsilon: float = 1e-8,
         precision: PrecisionLike = DEFAULT_PRECISION) -> dict[str, jax.Array]:
  """The 2-D N-jet up to order 2: smoothing, then the central-difference masks (`difference_mask`).

  x: (..., height, width). Returns {"L", "Lx", "Ly", "Lxx", "Lxy", "Lyy"}, each x's shape; y points
  up (Ly > 0 where intensity grows towards row 0). The masks are applied with the reflect boundary,
  as correlations. With ``normalize`` the derivatives of order |a| are multiplied by
  sigma^(gamma |a|) (variance-based scale normalisation, Lindeberg 1998). Reproduces pyscsp
  ``discscsp.computeNjetfcn(image, name, sigma, method + ("var" if normalize else ""), gamma)``
  (``discgauss`` / ``discgaussvar``) and is differentiable in sigma when N is given.
  """
  N = _smoothing_halfwidth(sigma, method, N, epsilon)
  return _njet_core(x, sigma, normalize, gamma, method, N, canonical_precision(precision))


@functools.partial(jax.jit,
                   static_argnames=("normalize", "gamma", "method", "N", "precision"))
def _njet_core(x, sigma, normalize: bool, gamma: float, method: str, N: int, precision):
  L = _scale_space_core(x, sigma, method, N, precision)
  scale = jnp.asarray(sigma, L.dtype)
  out = {}
  for name, (ox, oy) in NJET_ORDERS.items():
    d = L
    if ox:
      d = central_difference(pad_symmetric(d, 1, -1), ox, -1)
    if oy:
      # Rows run down, y up: d/dy is minus the row difference (even orders are unchanged).
      d = central_difference(pad_symmetric(d, 1, -2), oy, -2) * (-1) ** oy
    if normalize and ox + oy:
      d = d * scale ** (gamma * (ox + oy))
    out[name] = d
  return out


def njet_invariants(jet: dict[str, jax.Array]) -> dict[str, jax.Array]:
  """Laplace (Lxx + Lyy), detHessian (Lxx Lyy - Lxy^2) and Lv (gradient magnitude) of an N-jet.

  Reproduces pyscsp ``discscsp.applyNjetfcn`` for 'Laplace', 'detHessian' and 'Lv' (Lv is not
  differentiable where the gradient vanishes).
  """
  return {"Laplace": jet["Lxx"] + jet["Lyy"],
          "detHessian": jet["Lxx"] * jet["Lyy"] - jet["Lxy"] ** 2,
          "Lv": jnp.sqrt(jet["Lx"] ** 2 + jet["Ly"] ** 2)}


def gauss_derivative_conv(x: jax.Array, xorder: int, yorder: int, sigma: ArrayLike,
                          method: str = "samplgaussder", *, N: Optional[int] = None,
                          epsilon: float = 1e-4, normalize: bool = False, gamma: float = 1.0,
                          precision: PrecisionLike = DEFAULT_PRECISION) -> jax.Array:
  """Separable sampled/integrated Gaussian derivative filtering d^xorder_x d^yorder_y of images.

  x: (..., height, width) -> x's shape. The rows are correlated with the y-kernel (y points up,
  rows down, so correlating implements the y-derivative) and the columns convolved with the
  x-kernel; reflect boundary. N defaults to `gaussder_halfwidth(max(xorder, yorder), sigma,
  epsilon, 2)`. With ``normalize`` the result is multiplied by sigma^(gamma (xorder + yorder)).
  Reproduces pyscsp ``gaussders.gaussderconv(image, xorder, yorder, sigma, method(+"var"),
  gamma, epsilon)``.
  """
  if N is None:
    N = gaussder_halfwidth(max(xorder, yorder), _concrete(sigma), epsilon, 2)
  return _gauss_derivative_conv_core(x, xorder, yorder, sigma, method, int(N), normalize, gamma,
                                     canonical_precision(precision))


@functools.partial(jax.jit, static_argnames=("xorder", "yorder", "method", "N", "normalize",
                                             "gamma", "precision"))
def _gauss_derivative_conv_core(x, xorder, yorder, sigma, method, N, normalize, gamma, precision):
  dtype = _compute_dtype(x.dtype)
  ky = gauss_derivative_kernel(yorder, sigma, N, method, dtype=dtype)
  kx = gauss_derivative_kernel(xorder, sigma, N, method, dtype=dtype)
  out = separable_correlate(x.astype(dtype), ky, kx[::-1], precision)
  if normalize:
    out = out * jnp.asarray(sigma, dtype) ** (gamma * (xorder + yorder))
  return out


# --------------------------------------------------------------------------------------------------
# 3x3 masks and the Gaussian derivative layer's template.
# --------------------------------------------------------------------------------------------------


def difference_mask(name: str, dtype: Dtype = jnp.float32) -> jax.Array:
  """The 3x3 central-difference mask ``name`` in `MASK_NAMES`, applied as a correlation.

  dx = [-1/2, 0, 1/2] (middle row), dy = [1/2, 0, -1/2]^T (middle column, top to bottom: y points
  up), dxx = [1, -2, 1], dxy = [[-1/4, 0, 1/4], [0, 0, 0], [1/4, 0, -1/4]], dyy = [1, -2, 1]^T.
  Reproduces pyscsp ``torchscsp.<name>mask()`` (``discscsp.<name>mask()`` is the same without the
  zero border). Returns (3, 3).
  """
  m = np.zeros((3, 3))
  if name == "dx":
    m[1] = [-0.5, 0, 0.5]
  elif name == "dy":
    m[:, 1] = [0.5, 0, -0.5]
  elif name == "dxx":
    m[1] = [1, -2, 1]
  elif name == "dxy":
    m[:] = [[-0.25, 0, 0.25], [0, 0, 0], [0.25, 0, -0.25]]
  elif name == "dyy":
    m[:, 1] = [1, -2, 1]
  else:
    raise ValueError(f"unknown mask {name!r}; expected one of {MASK_NAMES}")
  return jnp.asarray(m, dtype)


def jet2mask(C: jax.Array, sigma: ArrayLike, dtype: Optional[Dtype] = None) -> jax.Array:
  """3x3 mask of a Gaussian derivative layer: C0 + sigma (Cx dx + Cy dy) + sigma^2/2 (Cxx dxx +
  Cxy dxy + Cyy dyy), the scale-normalised (gamma = 1) combination of Lindeberg (2022), eq. (11).

  Applied (as a correlation) to the discrete-analogue smoothed image it gives the layer's response.
  Reproduces pyscsp ``torchscsp.jet2mask(C0, Cx, Cy, Cxx, Cxy, Cyy, sigma)``; differentiable in C
  and sigma. Note C0 is added to all nine entries, as in pyscsp's template.

  Args:
    C: (..., 6) coefficients in the order C0, Cx, Cy, Cxx, Cxy, Cyy.
    sigma: scalar (or broadcastable to C[..., 0]).
    dtype: output dtype; None promotes C and sigma (at least float32).

  Returns:
    (..., 3, 3) masks.

  >>> jet2mask(jnp.array([0., 1., 0., 0., 0., 0.]), 2.0)[1]
  Array([-1.,  0.,  1.], dtype=float32)
  """
  if dtype is None:
    dtype = _compute_dtype(jnp.result_type(C, sigma))
  C = jnp.asarray(C, dtype)
  s = jnp.asarray(sigma, dtype)[..., None, None]
  masks = jnp.stack([difference_mask(n, dtype) for n in MASK_NAMES])  # (5, 3, 3)
  first = jnp.einsum("...k,kij->...ij", C[..., 1:3], masks[:2],
                     precision=lax.Precision.HIGHEST)
  second = jnp.einsum("...k,kij->...ij", C[..., 3:6], masks[2:],
                      precision=lax.Precision.HIGHEST)
  return C[..., 0, None, None] + s * first + s**2 / 2 * second
