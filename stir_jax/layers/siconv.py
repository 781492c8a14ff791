"""Scale-invariant convolution ``SiConv2d`` (Kanazawa-style kernel rescaling, as in Altstidl et al.).

One trainable k x k kernel bank is resized to ``k + 2i`` for every scale index ``i = 0 .. S-1``
(see ``interpolation.resize_kernel``, which includes the ``k**2 / t**2`` factor). Each resized kernel
is applied as a *valid* cross-correlation plus bias, and the result is zero-padded by ``i`` on every
side so that all scales share the size of scale 0. The output gains a scale axis at position 1.

Equivariance: the layer is equivariant to translations exactly (on the valid region, away from the
zero-padded border rings), and to rescaling of the input only approximately: a rescaled object meets a
kernel that is an *interpolated* copy of the base kernel, while the image itself was resampled, so
the responses at neighbouring scale indices match only up to interpolation error.

Two implementations give the same result (to float32 rounding, forward and gradients):

* ``direct``: one ``lax.conv_general_dilated`` per scale, the reference semantics.
* ``fft``: an exact FFT form. With ``N = H = W``, circular cross-correlation equals the valid one on
  the valid region. Scale ``i``'s kernel is embedded at offset ``-i (mod N)``, so its valid outputs land
  at ``[i, o0 - i)``, exactly where the reference pads them. The embedded kernel is
  ``P_i A_i W A_i^T P_i^T`` and its spectrum is ``G_i W H_i^T`` with the constant matrices
  ``G_i = DFT_N(P_i A_i)`` (N x k) and ``H_i = rDFT_N(P_i A_i)`` (N/2+1 x k). One ``rfft2`` of the
  input is shared by all scales, a complex contraction over input channels per frequency gives every
  (scale, output channel) spectrum, and one ``irfft2`` per map brings it back. The result is cropped
  to o0 x o0, the bias added and a constant 0/1 ring mask applied (the reference pads after the bias).
"""
from __future__ import annotations

import functools
from typing import Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from stir_jax.layers.initializers import torch_uniform
from stir_jax.layers.interpolation import MODES, interpolation_matrix, resize_kernel

IMPLS = ("auto", "direct", "fft")

_HIGHEST = jax.lax.Precision.HIGHEST


def num_scales_for(size: int, kernel_size: int) -> int:
  """Number of scales so that the largest kernel ``k + 2(S-1)`` still fits ``size``."""
  return (size - kernel_size) // 2 + 1


def _check_args(x: jax.Array, weight: jax.Array, bias: jax.Array, num_scales: int, mode: str,
                impl: str) -> None:
  if mode not in MODES:
    raise ValueError(f"unknown interpolation mode {mode!r}; valid modes are {MODES}")
  if impl not in IMPLS:
    raise ValueError(f"unknown impl {impl!r}; valid implementations are {IMPLS}")
  if x.ndim != 4:
    raise ValueError(f"x must be (B, H, W, Cin), got shape {x.shape}")
  if weight.ndim != 4 or weight.shape[0] != weight.shape[1]:
    raise ValueError(f"weight must be (k, k, Cin, Cout), got shape {weight.shape}")
  if weight.shape[2] != x.shape[3]:
    raise ValueError(f"weight expects {weight.shape[2]} input channels, x has {x.shape[3]}")
  if bias.shape != (weight.shape[3],):
    raise ValueError(f"bias must be ({weight.shape[3]},), got shape {bias.shape}")
  _, h, w, _ = x.shape
  k = weight.shape[0]
  expected = num_scales_for(min(h, w), k)
  if num_scales != expected:
    raise ValueError(
        f"input of size {h}x{w} gives {expected} scales for kernel {k} but the layer was built "
        f"for {num_scales}")


@functools.lru_cache(maxsize=None)
def _ring_mask(out_size: int, num_scales: int) -> np.ndarray:
  """(S, o0, o0) float32: 1 inside [i, o0 - i)^2 for scale i, 0 on the padded ring."""
  idx = np.arange(out_size)
  mask = np.zeros((num_scales, out_size, out_size), np.float32)
  for i in range(num_scales):
    inside = (idx >= i) & (idx < out_size - i)
    mask[i] = inside[:, None] & inside[None, :]
  mask.setflags(write=False)
  return mask


@functools.lru_cache(maxsize=None)
def _fft_operators(n: int, k: int, num_scales: int, mode: str) -> tuple[np.ndarray, ...]:
  """Constant spectra of the embedded, resized kernels (correlation form, conjugated).

  Returns:
    g_re, g_im: (S, N, k) float32, real and imaginary part of ``conj(DFT_N(P_i A_i)) * k / t_i``.
    h_re, h_im: (S, N//2+1, k) float32, the same for the real DFT (first N//2+1 rows).
  With them the conjugate spectrum of the embedded 2-D kernel of scale i is
  ``g_i W h_i^T`` (the ``k**2 / t_i**2`` factor is split evenly between both sides).
  """
  rows = np.arange(n)
  dft = np.exp(-2j * np.pi * np.outer(rows, rows) / n)  # (N, N)
  g = np.empty((num_scales, n, k), np.complex128)
  for i in range(num_scales):
    t = k + 2 * i
    a = interpolation_matrix(k, t, mode) * (k / t)  # (t, k)
    embedded = np.zeros((n, k))
    np.add.at(embedded, (np.arange(t) - i) % n, a)  # kernel tap a sits at (a - i) mod N
    g[i] = np.conj(dft @ embedded)
  h = g[:, : n // 2 + 1]
  ops = tuple(np.ascontiguousarray(z, dtype=np.float32) for z in (g.real, g.imag, h.real, h.imag))
  for z in ops:
    z.setflags(write=False)
  return ops


def _siconv_direct(x: jax.Array, weight: jax.Array, bias: jax.Array, num_scales: int, mode: str,
                   precision) -> jax.Array:
  outs = []
  for i in range(num_scales):
    kern = resize_kernel(weight, weight.shape[0] + 2 * i, mode)
    y = jax.lax.conv_general_dilated(
        x, kern, window_strides=(1, 1), padding="VALID",
        dimension_numbers=("NHWC", "HWIO", "NHWC"), precision=precision)
    y = y + bias
    outs.append(jnp.pad(y, ((0, 0), (i, i), (i, i), (0, 0))))
  return jnp.stack(outs, axis=1)


def _siconv_fft(x: jax.Array, weight: jax.Array, bias: jax.Array, num_scales: int, mode: str,
                precision) -> jax.Array:
  b, n, _, cin = x.shape
  k, _, _, cout = weight.shape
  o0 = n - k + 1
  g_re, g_im, h_re, h_im = (jnp.asarray(z, dtype=x.dtype)
                            for z in _fft_operators(n, k, num_scales, mode))

  # Input spectrum, shared by all scales: (B, Cin, N, V) -> (N, V, B, Cin).
  xf = jnp.fft.rfft2(jnp.transpose(x, (0, 3, 1, 2)))
  xf = jnp.transpose(xf, (2, 3, 0, 1))

  # Conjugate kernel spectra of all scales. W is real, so the first (rDFT) side is two real
  # contractions; the second (complex DFT) side is one complex contraction, batched over scales.
  w = weight.astype(x.dtype)
  t_re = jnp.einsum("svb,abio->savio", h_re, w, precision=_HIGHEST)
  t_im = jnp.einsum("svb,abio->savio", h_im, w, precision=_HIGHEST)
  t = jax.lax.complex(t_re, t_im)  # (S, k, V, Cin, Cout)
  g = jax.lax.complex(g_re, g_im)  # (S, N, k)

  if cin == 1:
    # A single input map: a broadcast product, written directly in the irfft2 layout.
    kf = jnp.einsum("sua,savo->souv", g, t[:, :, :, 0], precision=_HIGHEST)
    yf = jnp.transpose(xf[..., 0], (2, 0, 1))[:, None, None] * kf[None]
  else:
    # Per-frequency contraction over input channels: a batched complex matmul
    # (B, Cin) x (Cin, S * Cout) for every frequency (u, v).
    kf = jnp.einsum("sua,savio->suvio", g, t, precision=_HIGHEST)  # (S, N, V, Cin, Cout)
    yf = jnp.einsum("uvbi,suvio->bsouv", xf, kf, precision=precision)
  y = jnp.fft.irfft2(yf, s=(n, n))[..., :o0, :o0]  # (B, S, Cout, o0, o0)
  y = jnp.transpose(y, (0, 1, 3, 4, 2)) + bias
  mask = jnp.asarray(_ring_mask(o0, num_scales), dtype=y.dtype)
  return y * mask[None, :, :, :, None]


def siconv2d(x: jax.Array, weight: jax.Array, bias: jax.Array, *, num_scales: int,
             mode: str = "bicubic", impl: str = "auto", precision=None) -> jax.Array:
  """Scale-invariant convolution: the kernel at every size ``k + 2i``, valid, then zero-padded.

  Equivariant to translations exactly (on the valid region) and to rescaling only approximately
  (kernels are interpolated and images resampled).

  Args:
    x: input (B, H, W, Cin).
    weight: base kernels (k, k, Cin, Cout), HWIO.
    bias: (Cout,), added to every scale before the zero padding.
    num_scales: S; must equal ``num_scales_for(min(H, W), k)``.
    mode: kernel interpolation mode, one of ``interpolation.MODES``.
    impl: ``"direct"`` (one conv per scale), ``"fft"`` (exact FFT form, square inputs only) or
      ``"auto"`` (fft when H == W, else direct).
    precision: ``lax.Precision`` for the main conv / per-frequency contraction (None: backend
      default). The small kernel-building contractions always use HIGHEST.

  Returns:
    (B, S, H-k+1, W-k+1, Cout). Scale i holds the valid response to the kernel of size k + 2i plus
    bias in ``[i, H-k+1-i) x [i, W-k+1-i)`` and exactly 0 on the ring outside it.

  Raises:
    ValueError: wrong ``num_scales`` for the input size, unknown mode/impl, bad shapes, or a
      non-square input with ``impl="fft"``.
  """
  _check_args(x, weight, bias, num_scales, mode, impl)
  square = x.shape[1] == x.shape[2]
  if impl == "auto":
    impl = "fft" if square else "direct"
  if impl == "fft":
    if not square:
      raise ValueError(f"impl='fft' needs a square input, got {x.shape[1]}x{x.shape[2]}; "
                       "use impl='direct' or 'auto'")
    return _siconv_fft(x, weight, bias, num_scales, mode, precision)
  return _siconv_direct(x, weight, bias, num_scales, mode, precision)


class SiConv2d(nn.Module):
  """Scale-invariant 2-D convolution layer (the paper's ``SiConv2d``), channels-last.

  Maps (B, H, W, Cin) to (B, S, H-k+1, W-k+1, features): the base kernel resized to every size
  ``k + 2i``, ``i < S``. Equivariant to translations exactly (on the valid region) and to rescaling
  only approximately (kernels are interpolated and images resampled).

  Attributes:
    features: output channels.
    kernel_size: k of the base kernel.
    num_scales: S; None derives it from the input, ``(min(H, W) - k)//2 + 1``. When given, an input
      of a different size is an error.
    mode: kernel interpolation mode (``interpolation.MODES``).
    impl: ``"auto"``, ``"direct"`` or ``"fft"`` (see ``siconv2d``).
  """
  features: int
  kernel_size: int = 7
  num_scales: Optional[int] = None
  mode: str = "bicubic"
  impl: str = "auto"

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    cin = x.shape[-1]
    k = self.kernel_size
    init = torch_uniform(cin * k * k)
    kernel = self.param("kernel", init, (k, k, cin, self.features))
    bias = self.param("bias", init, (self.features,))
    num_scales = self.num_scales
    if num_scales is None:
      num_scales = num_scales_for(min(x.shape[1], x.shape[2]), k)
    return siconv2d(x, kernel, bias, num_scales=num_scales, mode=self.mode, impl=self.impl)
