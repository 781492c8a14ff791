"""SS-CNN: scale-steerable filters (Ghosh & Gupta, "Scale Steerable Filters for Locally
Scale-Invariant Convolutional Neural Networks", ICML workshop 2019, arXiv 1906.03861).

Every kernel is a trained complex combination of fixed *log-radial harmonics*: on an ``M x M`` grid
with radius ``r`` (1 at the centre pixel) and angle ``phi = atan2(right, up)``, basis function
``(k, beta)`` is

  ``exp(-d(phi, phi0)^2 / (2 sigma^2)) / r * exp(i (kappa_k ln r + phase))``, zero for
  ``r > (M - 1) / 2``, real and imaginary parts each scaled to unit L2 norm,

with ``d`` the angular distance to the nearer of ``phi0`` and ``phi0 + pi`` (each distance only
considers a ``+2 pi`` wrap) and ``kappa_k = 2 pi k / ln(max r on the grid)``. Rescaling ``r`` by
``s`` multiplies a log-radial harmonic by the phase ``exp(i kappa ln s)``, so the kernel at size
``n`` (the centre ``n x n`` crop, scale ``s = n / kernel_size``) is the same combination with the
coefficients rotated by ``psi = -kappa_k ln s``:

  ``W_n = sum_{k, beta} Re[(mult_real + i mult_imag) e^{i psi}] * real_{k, beta}
                       - Im[(mult_real + i mult_imag) e^{i psi}] * imag_{k, beta}``.

The layer correlates the input with ``W_n`` for every size ``n`` in ``kernel_sizes`` ('same'
padding ``(n - 1) / 2``), takes the maximum over sizes (ties to the first size, as PyTorch's
``max``), then a ReLU.

Scale behaviour: the max over steered kernel sizes makes the response approximately invariant to
local rescalings within ``min(kernel_sizes) / kernel_size .. max(kernel_sizes) / kernel_size``;
only approximately (the basis is sampled on a pixel grid, cropped, and the ``1/r`` window is not
scale-covariant at the centre pixel). Equivariant to integer translations (exactly, away from the
borders).

Reference: ISosnovik/sesn (commit deaa16c), ``models/impl/scale_steerable.py``:
``generate_filter_basis``, ``steerable_conv`` and ``ScaleConv_steering`` (a slightly modified copy
of the authors' github.com/rghosh92/SS-CNN). Behaviour reproduced, including its quirks:

* the ``padding`` argument of ``ScaleConv_steering`` is ignored (every size uses ``(n - 1) / 2``);
* ``steer_conv.const_real`` is a parameter that the forward pass never reads: it is not created
  here (its gradient in the reference is zero);
* ``drop_rate`` and ``mode`` have no effect;
* ``effective_k`` used for steering is the one of the *last* ``basis_scale`` (the reference
  overwrites it in its loop); with the usual single ``basis_scale`` this is immaterial.

Parameters keep the reference layout: ``mult_real`` and ``mult_imag`` (K, out, in, B) with
``K = len(k_range)`` and ``B = len(phi_range) * len(sigma_phi_range) * len(phase_range) *
len(basis_scale)`` (phi outermost, basis_scale innermost). The basis is a constant built by
`steerable_basis` (checked equal to the reference's ``filter_real`` / ``filter_imag`` buffers).

>>> basis = steerable_basis(11)                          # K=3, 11x11 grid, B=9
>>> y = scale_steerable_conv2d(jnp.zeros((2, 20, 20, 2)), jnp.zeros((3, 4, 2, 9)),
...                            jnp.zeros((3, 4, 2, 9)), basis, (5, 7, 9, 11), 7)
>>> y.shape
(2, 20, 20, 4)
"""
from __future__ import annotations

import functools
import math
from typing import NamedTuple, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from stir_jax.layers import forms
from stir_jax.layers.conv import conv2d
from stir_jax.layers.dtypes import DEFAULT_PRECISION, Dtype, PrecisionLike, canonical_precision
from stir_jax.layers.dtypes import promote_dtype
from stir_jax.layers.scale_pool import scale_pool

# The defaults of the reference's ScaleConv_steering (and of its MNIST models).
K_RANGE = (0.5, 1.0, 2.0)
PHI_RANGE = tuple(float(p) for p in np.linspace(0.0, np.pi, 9))
SIGMA_PHI_RANGE = (np.pi / 16,)
PHASE_RANGE = (-np.pi / 4,)
BASIS_SCALE = (1.0,)

IMPLS = forms.IMPLS
# impl="auto" on CPU: the FFT form from this (largest) kernel size on (see `_conv`).
FFT_FROM_SIZE = forms.LARGE_STEERABLE


class SteerableBasis(NamedTuple):
  """The fixed filters of one layer, float64 NumPy (read-only).

  real, imag: ``(K, M, M, B)``, the reference's ``filter_real`` / ``filter_imag`` layout.
  effective_k: ``(K,)``, the radial frequencies ``kappa_k`` used for steering.
  """
  real: np.ndarray
  imag: np.ndarray
  effective_k: np.ndarray


def _angular_distance(phi: np.ndarray, phi0: float) -> np.ndarray:
  """|phi - phi0|, allowing one +2 pi wrap of phi (the reference's rule, not a full mod 2 pi)."""
  return np.minimum(np.abs(phi - phi0), np.abs(phi + 2 * np.pi - phi0))


def _log_radial_harmonic(size: int, phi0: float, sigma: float, k: float, scale: float,
                         phase: float) -> tuple[np.ndarray, np.ndarray, float]:
  """One (real, imag) basis pair on a ``size x size`` grid, unnormalised, and its kappa."""
  c = (size - 1) // 2
  up = (c - np.arange(size))[:, None] * np.ones((1, size))      # row i: (M - 1) / 2 - i
  right = np.ones((size, 1)) * (np.arange(size) - c)[None, :]   # column j: j - (M - 1) / 2
  dist = np.hypot(up, right)              # Euclidean distance to the centre pixel
  inside = dist <= c                      # the disc of radius (M - 1) / 2 (centre included)
  radius = scale * np.where(dist == 0, 1.0, dist)
  log_r = np.log(radius)
  phi = np.arctan2(right, up)
  d = np.minimum(_angular_distance(phi, phi0), _angular_distance(phi, phi0 + np.pi))
  window = np.exp(-d**2 / (2 * sigma * sigma)) / radius
  kappa = 2 * np.pi * k / np.log(np.max(radius))
  arg = kappa * log_r + phase
  return window * np.cos(arg) * inside, window * np.sin(arg) * inside, kappa


@functools.lru_cache(maxsize=None)
def _basis(size: int, k_range: tuple, phi_range: tuple, sigma_phi_range: tuple,
           phase_range: tuple, basis_scale: tuple) -> SteerableBasis:
  num = len(phi_range) * len(sigma_phi_range) * len(phase_range) * len(basis_scale)
  real = np.zeros((len(k_range), size, size, num))
  imag = np.zeros_like(real)
  kappas = np.zeros(len(k_range))
  for i, k in enumerate(k_range):
    combos = [(p, s, ph, b) for p in phi_range for s in sigma_phi_range for ph in phase_range
              for b in basis_scale]  # phi outermost, basis_scale innermost, as the reference
    for j, (phi0, sigma, phase, scale) in enumerate(combos):
      re, im, kappas[i] = _log_radial_harmonic(size, phi0, sigma, k, scale, phase)
      real[i, :, :, j] = re / np.linalg.norm(re)
      imag[i, :, :, j] = im / np.linalg.norm(im)
  for a in (real, imag, kappas):
    a.setflags(write=False)
  return SteerableBasis(real, imag, kappas)


def steerable_basis(size: int, k_range: Sequence[float] = K_RANGE,
                    phi_range: Sequence[float] = PHI_RANGE,
                    sigma_phi_range: Sequence[float] = SIGMA_PHI_RANGE,
                    phase_range: Sequence[float] = PHASE_RANGE,
                    basis_scale: Sequence[float] = BASIS_SCALE) -> SteerableBasis:
  """The log-radial-harmonic basis of one SS-CNN layer on a ``size x size`` grid (module docstring).

  Args:
    size: the grid side ``M``, odd: the largest kernel size of the layer.
    k_range: radial orders ``k`` (``kappa_k = 2 pi k / ln(max r)``).
    phi_range: angular centres ``phi0`` (radians; each window also covers ``phi0 + pi``).
    sigma_phi_range: angular widths.
    phase_range: radial phases.
    basis_scale: radius multipliers.

  Returns:
    A `SteerableBasis`: real and imag ``(K, size, size, B)`` and effective_k ``(K,)``, float64,
    cached and read-only.
  """
  if size < 1 or size % 2 == 0:
    raise ValueError(f"the basis grid needs an odd size, got {size}")
  as_tuple = lambda v: tuple(float(a) for a in np.atleast_1d(np.asarray(v, np.float64)))
  return _basis(int(size), as_tuple(k_range), as_tuple(phi_range), as_tuple(sigma_phi_range),
                as_tuple(phase_range), as_tuple(basis_scale))


def _check_sizes(kernel_sizes: Sequence[int], size: int) -> None:
  if any(n % 2 == 0 or n < 1 or n > size for n in kernel_sizes):
    raise ValueError(f"kernel sizes must be odd and at most the basis size {size}, got "
                     f"{tuple(kernel_sizes)}")


@functools.lru_cache(maxsize=None)
def _steering(kernel_sizes: tuple, kernel_size: int, effective_k: tuple) -> np.ndarray:
  """(N, K) steering angles psi = -kappa_k ln(n / kernel_size), float64."""
  scales = np.asarray(kernel_sizes, np.float64) / kernel_size
  return -np.outer(np.log(scales), np.asarray(effective_k))


def steerable_kernels(mult_real: jax.Array, mult_imag: jax.Array, basis: SteerableBasis,
                      kernel_sizes: Sequence[int], kernel_size: int,
                      precision: PrecisionLike = DEFAULT_PRECISION) -> jax.Array:
  """The steered kernels of every size, each zero-padded to the basis size (module docstring).

  Args:
    mult_real, mult_imag: ``(K, out, in, B)`` coefficients.
    basis: `steerable_basis` of size ``M >= max(kernel_sizes)``.
    kernel_sizes: odd sizes ``n``; size ``n`` uses the centre ``n x n`` crop of the basis.
    kernel_size: the nominal size; size ``n`` is steered to scale ``n / kernel_size``.
    precision: of the combination einsum.

  Returns:
    ``(M, M, in, N * out)`` HWIO in the promoted dtype of the coefficients; output channel
    ``n * out + o`` is filter ``o`` at ``kernel_sizes[n]`` (zero outside its centre crop). A
    correlation with 'same' padding ``(M - 1) / 2`` equals the reference's per-size correlation
    with padding ``(n - 1) / 2``.
  """
  mult_real, mult_imag = promote_dtype(mult_real, mult_imag)
  dt = mult_real.dtype
  size = basis.real.shape[1]
  _check_sizes(kernel_sizes, size)
  psi = _steering(tuple(int(n) for n in kernel_sizes), int(kernel_size),
                  tuple(basis.effective_k.tolist()))
  cos = jnp.asarray(np.cos(psi), dt)[:, :, None, None, None]                 # (N, K, 1, 1, 1)
  sin = jnp.asarray(np.sin(psi), dt)[:, :, None, None, None]
  rotated_real = mult_real * cos - mult_imag * sin                          # (N, K, O, I, B)
  rotated_imag = mult_real * sin + mult_imag * cos
  coefficients = jnp.concatenate([rotated_real, rotated_imag], axis=1)       # (N, 2K, O, I, B)
  filters = _cropped_filters(basis, tuple(int(n) for n in kernel_sizes))     # (N, 2K, M, M, B)
  kernels = jnp.einsum("nkoib,nkhwb->hwino", coefficients, jnp.asarray(filters, dt),
                       precision=canonical_precision(precision))
  n, o, i = len(kernel_sizes), mult_real.shape[1], mult_real.shape[2]
  return kernels.reshape(size, size, i, n * o)


def _cropped_filters(basis: SteerableBasis, kernel_sizes: tuple) -> np.ndarray:
  """(N, 2K, M, M, B) float32: [real, -imag] stacked over k, each masked to its size's crop."""
  size = basis.real.shape[1]
  c = (size - 1) // 2
  stacked = np.concatenate([basis.real, -basis.imag], axis=0)                 # (2K, M, M, B)
  out = np.zeros((len(kernel_sizes),) + stacked.shape, np.float32)
  for j, n in enumerate(kernel_sizes):
    h = (n - 1) // 2
    out[j, :, c - h:c + h + 1, c - h:c + h + 1] = stacked[:, c - h:c + h + 1, c - h:c + h + 1]
  return out


def _conv(x: jax.Array, kernel: jax.Array, impl: str, precision: PrecisionLike) -> jax.Array:
  """'same' correlation with the stacked kernels. impl "auto" takes the "large_kernel" rows of
  `forms.FORM_TABLE` (the FFT form when lowered for CPU, the direct form on GPU and TPU) for
  kernels of at least `forms.LARGE_STEERABLE`, the "conv2d" rows (direct) for smaller ones.

  Measured on the shared 2-core CPU (forward + gradient, batch 16, 16 -> 32 channels): largest
  size 7, XLA 142 / FFT 103 ms at 28x28 and 808 / 815 ms at 64x64; largest size 9, 201 / 163 ms
  and 1188 / 875 ms; largest size 11 at 28x28, 439 / 262 ms; the STIR "ss" train step (sizes up to
  19, batch 16) 10.7 s with XLA against 2.6 s with FFT.
  """
  pad = kernel.shape[0] // 2
  family = "large_kernel" if kernel.shape[0] >= FFT_FROM_SIZE else "conv2d"
  choices = forms.forms_by_platform(impl, family, precision)
  run = lambda form, x, k: conv2d(x, k, padding=pad, impl=form, precision=precision)
  return forms.by_platform(run, choices, x, kernel)


def scale_steerable_conv2d(x: jax.Array, mult_real: jax.Array, mult_imag: jax.Array,
                           basis: SteerableBasis, kernel_sizes: Sequence[int], kernel_size: int,
                           relu: bool = True, impl: str = "auto",
                           precision: PrecisionLike = DEFAULT_PRECISION,
                           return_indices: bool = False):
  """The ``ScaleConv_steering`` layer: steered kernels of every size, 'same' correlation, max over
  sizes (ties to the first), ReLU.

  Args:
    x: ``(batch, H, W, in)``.
    mult_real, mult_imag: ``(K, out, in, B)``.
    basis: `steerable_basis` (its size is the largest kernel size the layer may use).
    kernel_sizes: odd kernel sizes ``n``.
    kernel_size: nominal size (size ``n`` is scale ``n / kernel_size``).
    relu: apply the ReLU (the reference's default).
    impl: "auto" (`forms.FORM_TABLE`: the FFT form on CPU for kernels of 9 and more, the direct
      form otherwise), "direct" or "fft" ("xla": deprecated alias of "direct").
    precision: of the kernel synthesis and the convolution.
    return_indices: also return the index of the winning size.

  Returns:
    ``(batch, H, W, out)`` in the promoted dtype of x and the coefficients; with return_indices,
    ``(y, indices)`` with int32 indices ``(batch, H, W, out)`` into ``kernel_sizes``.
  """
  x, mult_real, mult_imag = promote_dtype(x, mult_real, mult_imag)
  if x.shape[-1] != mult_real.shape[2]:
    raise ValueError(f"coefficients expect {mult_real.shape[2]} input channels, x has "
                     f"{x.shape[-1]}")
  kernels = steerable_kernels(mult_real, mult_imag, basis, kernel_sizes, kernel_size, precision)
  # Crop the zero border the largest requested size leaves unused in the basis.
  size = basis.real.shape[1]
  trim = (size - max(kernel_sizes)) // 2
  if trim:
    kernels = kernels[trim:size - trim, trim:size - trim]
  y = _conv(x, kernels, impl, precision)
  b, h, w, _ = y.shape
  stacked = jnp.moveaxis(y.reshape(b, h, w, len(kernel_sizes), mult_real.shape[1]), 3, 1)
  y, indices = scale_pool(stacked, "pixel")
  if relu:
    y = jax.nn.relu(y)
  return (y, indices) if return_indices else y


def _coefficient_init(num_funcs: int, fan: int):
  """The reference's init: U(+-sqrt(2 / (B in out))) (its filters have unit norm)."""
  bound = math.sqrt(2.0 / (num_funcs * fan))

  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -bound, bound)

  return init


class ScaleConvSteering(nn.Module):
  """SS-CNN layer over `scale_steerable_conv2d`: ``(B, H, W, in) -> (B, H, W, features)``.

  Parameters ``mult_real`` and ``mult_imag`` (K, features, in, B), initialised as the reference
  (U(+-sqrt(2 / (B in features)))). The basis is built on the grid ``max(kernel_sizes)``.

  Attributes:
    features: output channels.
    kernel_size: nominal kernel size (size n is steered to scale n / kernel_size).
    kernel_sizes: odd kernel sizes the maximum runs over.
    k_range, phi_range, sigma_phi_range, phase_range, basis_scale: the basis (`steerable_basis`).
    relu: apply the ReLU after the maximum.
    impl: convolution algorithm ("auto", "direct", "fft"; see `scale_steerable_conv2d`).
    dtype, param_dtype, precision: as flax.linen.Conv (precision default "highest").
  """
  features: int
  kernel_size: int = 7
  kernel_sizes: Sequence[int] = (5, 7, 9, 11)
  k_range: Sequence[float] = K_RANGE
  phi_range: Sequence[float] = PHI_RANGE
  sigma_phi_range: Sequence[float] = SIGMA_PHI_RANGE
  phase_range: Sequence[float] = PHASE_RANGE
  basis_scale: Sequence[float] = BASIS_SCALE
  relu: bool = True
  impl: str = "auto"
  dtype: Optional[Dtype] = None
  param_dtype: Dtype = jnp.float32
  precision: PrecisionLike = DEFAULT_PRECISION

  def basis(self) -> SteerableBasis:
    return steerable_basis(max(self.kernel_sizes), self.k_range, self.phi_range,
                           self.sigma_phi_range, self.phase_range, self.basis_scale)

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    basis = self.basis()
    k, _, _, b = basis.real.shape
    shape = (k, self.features, x.shape[-1], b)
    init = _coefficient_init(b, self.features * x.shape[-1])
    mult_real = self.param("mult_real", init, shape, self.param_dtype)
    mult_imag = self.param("mult_imag", init, shape, self.param_dtype)
    x, mult_real, mult_imag = promote_dtype(x, mult_real, mult_imag, dtype=self.dtype)
    return scale_steerable_conv2d(x, mult_real, mult_imag, basis, self.kernel_sizes,
                                  self.kernel_size, self.relu, self.impl, self.precision)


def from_torch(state: dict, prefix: str = "") -> dict:
  """``{prefix}steer_conv.mult_real`` / ``mult_imag`` of a reference state dict -> params.

  The fixed ``filter_real`` / ``filter_imag`` buffers are rebuilt by `steerable_basis`; the unused
  ``const_real`` is dropped.
  """
  get = lambda n: np.asarray(state[f"{prefix}steer_conv.{n}"], np.float32)
  return {"mult_real": get("mult_real"), "mult_imag": get("mult_imag")}
