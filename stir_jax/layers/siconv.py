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
from stir_jax.layers.scale_pool import scale_pool

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


@functools.lru_cache(maxsize=None)
def _spectrum_operators(n: int, k: int, num_scales: int, mode: str) -> tuple[np.ndarray, ...]:
  """Real-stacked forms of ``_fft_operators`` for ``_siconv_fft``.

  Returns:
    g2: (S, 2, N, 2k): ``[[g_re, -g_im], [g_im, g_re]]`` so that ``g2[s] @ [t_re; t_im]`` gives
      ``[re; im]`` of ``g_s t`` for a complex ``t = t_re + i t_im`` (rows stacked over the 2k axis).
    h_re, h_im: (S, N//2+1, k) as in ``_fft_operators``.
  """
  g_re, g_im, h_re, h_im = _fft_operators(n, k, num_scales, mode)
  g2 = np.stack([np.concatenate([g_re, -g_im], -1), np.concatenate([g_im, g_re], -1)], 1)
  g2 = np.ascontiguousarray(g2, dtype=np.float32)
  g2.setflags(write=False)
  return g2, h_re, h_im


@functools.lru_cache(maxsize=None)
def _inverse_operator(n: int, out_size: int, i: int) -> tuple[np.ndarray, np.ndarray]:
  """Scale i's inverse real DFT matrices with the crop to ``[i, o0 - i)`` folded in.

  With m = o0 - 2i kept rows/columns p, q in [i, o0 - i):
    e2: (2, m, 2, N) float32, stage 1 (u -> p, complex, real-stacked): ``e2[x, p, r, u]`` maps
      the r (re, im) part of Y[u] to the x part of ``sum_u exp(2 pi i u p / N) Y[u]``.
    f2: (m, V, 2) float32, stage 2 (v -> q, real part of the Hermitian half-spectrum sum):
      ``y[q] = sum_v f2[q, v, 0] Z_re[v] + f2[q, v, 1] Z_im[v]``, the 1/N^2 and the Hermitian
      weights (1 for v = 0 and v = N/2, else 2) included.
  Exact for spectra of real signals, as ``irfft2`` is.
  """
  v_size = n // 2 + 1
  weights = np.full(v_size, 2.0)
  weights[0] = 1.0
  if n % 2 == 0:
    weights[-1] = 1.0
  p = np.arange(i, out_size - i)
  e = np.exp(2j * np.pi * np.outer(p, np.arange(n)) / n)  # (m, N)
  e2 = np.stack([np.stack([e.real, -e.imag], 1), np.stack([e.imag, e.real], 1)], 0)
  f = np.exp(2j * np.pi * np.outer(p, np.arange(v_size)) / n) * weights / (n * n)  # (m, V)
  f2 = np.stack([f.real, -f.imag], -1)
  pair = tuple(np.ascontiguousarray(z, dtype=np.float32) for z in (e2, f2))
  for z in pair:
    z.setflags(write=False)
  return pair


def _fft_prepare(x: jax.Array, weight: jax.Array, num_scales: int, mode: str
                 ) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Input spectrum (re, im), each (N, V, B, Cin), and kernel spectra (S, 2, N, V, Cin, Cout).

  Linear in x (the first two) and in weight (the third).
  """
  n = x.shape[1]
  k = weight.shape[0]
  dt = x.dtype
  g2, h_re, h_im = (jnp.asarray(z, dtype=dt) for z in _spectrum_operators(n, k, num_scales, mode))
  # Input spectrum, shared by all scales: (B, Cin, N, V) -> (N, V, B, Cin).
  xf = jnp.fft.rfft2(jnp.transpose(x, (0, 3, 1, 2)))
  xr = jnp.transpose(xf.real, (2, 3, 0, 1))
  xi = jnp.transpose(xf.imag, (2, 3, 0, 1))
  # Conjugate kernel spectra: W is real, so the rDFT side is two real contractions
  # (S, k, V, Cin, Cout); the complex DFT side is one real-stacked matmul per scale, which leaves
  # each scale's real and imaginary parts as contiguous slices.
  w = weight.astype(dt)
  t_re = jnp.einsum("svb,abio->savio", h_re, w, precision=_HIGHEST)
  t_im = jnp.einsum("svb,abio->savio", h_im, w, precision=_HIGHEST)
  t2 = jnp.concatenate([t_re, t_im], axis=1)  # (S, 2k, V, Cin, Cout)
  kf = jnp.einsum("sxua,savio->sxuvio", g2, t2, precision=_HIGHEST)  # (S, 2, N, V, Cin, Cout)
  return xr, xi, kf


def _fft_scale(i: int, xr: jax.Array, xi: jax.Array, kr: jax.Array, ki: jax.Array,
               bias: jax.Array, out_size: int, precision) -> jax.Array:
  """Scale i on its valid region: (B, m, m, Cout), m = o0 - 2i, bias included.

  xr, xi: (N, V, B, Cin) input spectrum; kr, ki: (N, V, Cin, Cout) that scale's kernel spectrum.
  """
  n, v_size, b, cin = xr.shape
  cout = kr.shape[-1]
  dt = xr.dtype
  if cin == 1:
    # A single input map: broadcast products (N, V, B, Cout).
    re = xr * kr - xi * ki
    im = xr * ki + xi * kr
    yf = jnp.stack([re, im], axis=2)  # (N, V, 2, B, Cout)
  else:
    # Per-frequency (B, Cin) x (Cin, Cout) complex matmul as two real batched matmuls with
    # [re; im] stacked along the rows.
    x1 = jnp.concatenate([xr, xi], axis=2)  # (N, V, 2B, Cin)
    x2 = jnp.concatenate([-xi, xr], axis=2)
    yf = (jnp.einsum("uvbi,uvio->uvbo", x1, kr, precision=precision)
          + jnp.einsum("uvbi,uvio->uvbo", x2, ki, precision=precision))
    yf = yf.reshape(n, v_size, 2, b, cout)
  e2, f2 = (jnp.asarray(z, dt) for z in _inverse_operator(n, out_size, i))
  z = jnp.einsum("xpru,uvrbo->xpvbo", e2, yf, precision=_HIGHEST)
  return jnp.einsum("xpvbo,qvx->bpqo", z, f2, precision=_HIGHEST) + bias


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4, 5))
def _siconv_fft(x: jax.Array, weight: jax.Array, bias: jax.Array, num_scales: int, mode: str,
                precision) -> jax.Array:
  """Exact FFT form; everything after the input ``rfft2`` is real matmuls, one scale at a time.

  Layouts: the input spectrum is (N, V, B, Cin) (frequencies as batch dimensions of the
  per-frequency matmuls); the kernel spectra are computed for all scales at once as
  (S, re/im, N, V, Cin, Cout); each scale's output spectrum is (N, V, re/im, B, Cout) and goes
  back to space with two real matmuls (inverse DFT along u, then the real part of the inverse
  half-spectrum DFT along v) that only produce the rows and columns of that scale's valid
  region, already in (B, p, q, Cout) order. The zero ring is a pad.
  """
  return _siconv_fft_fwd(x, weight, bias, num_scales, mode, precision)[0]


def _siconv_fft_fwd(x, weight, bias, num_scales, mode, precision):
  xr, xi, kf = _fft_prepare(x, weight, num_scales, mode)
  o0 = x.shape[1] - weight.shape[0] + 1
  outs = []
  for i in range(num_scales):
    y = _fft_scale(i, xr, xi, kf[i, 0], kf[i, 1], bias, o0, precision)
    outs.append(jnp.pad(y, ((0, 0), (i, i), (i, i), (0, 0))))
  return jnp.stack(outs, axis=1), (x, weight, xr, xi, kf)


def _siconv_fft_bwd(num_scales, mode, precision, res, g):
  x, weight, xr, xi, kf = res
  o0 = x.shape[1] - weight.shape[0] + 1
  # The ring is a constant zero: only the valid region carries gradient.
  return _fft_backward(x, weight, xr, xi, kf, lambda i: g[:, i, i:o0 - i, i:o0 - i, :],
                       num_scales, mode, precision)


# Hand-written per-scale adjoint: XLA's transposes of the per-scale dots were about 2x slower.
_siconv_fft.defvjp(_siconv_fft_fwd, _siconv_fft_bwd)


def _fft_backward(x, weight, xr, xi, kf, scale_cotangent, num_scales, mode, precision):
  """Cotangents (x, weight, bias) of the per-scale FFT form, one scale at a time.

  scale_cotangent(i) gives the cotangent of scale i on its valid region, (B, m, m, Cout).
  """
  n, v_size, b, cin = xr.shape
  cout = kf.shape[-1]
  o0 = x.shape[1] - weight.shape[0] + 1
  dt = xr.dtype
  if cin > 1:
    x12 = jnp.concatenate([jnp.concatenate([xr, xi], axis=2),
                           jnp.concatenate([-xi, xr], axis=2)], axis=3)  # (N, V, 2B, 2Cin)
  dxr = jnp.zeros_like(xr)
  dxi = jnp.zeros_like(xi)
  dx12 = jnp.zeros((n, v_size, 2 * b, 2 * cin), dt)
  dkf = []
  dbias = jnp.zeros((cout,), dt)
  for i in range(num_scales):
    gi = scale_cotangent(i).astype(dt)
    dbias = dbias + jnp.sum(gi, axis=(0, 1, 2))
    # Adjoint of the two inverse-DFT stages (hand-written layouts; XLA's own transposes of
    # these dots were about 2x slower).
    e2, f2 = (jnp.asarray(z, dt) for z in _inverse_operator(n, o0, i))
    dz = jnp.einsum("bpqo,qvx->xpvbo", gi, f2, precision=_HIGHEST)
    dyf = jnp.einsum("xpru,xpvbo->uvrbo", e2, dz, precision=_HIGHEST)  # (N, V, 2, B, Cout)
    kr, ki = kf[i, 0], kf[i, 1]
    if cin == 1:
      dre, dim = dyf[:, :, 0], dyf[:, :, 1]  # (N, V, B, Cout)
      dkr = jnp.sum(xr * dre + xi * dim, axis=2, keepdims=True)  # (N, V, 1, Cout)
      dki = jnp.sum(xr * dim - xi * dre, axis=2, keepdims=True)
      dxr = dxr + jnp.sum(kr * dre + ki * dim, axis=3, keepdims=True)
      dxi = dxi + jnp.sum(kr * dim - ki * dre, axis=3, keepdims=True)
      dkf.append(jnp.stack([dkr, dki]))
    else:
      dy = dyf.reshape(n, v_size, 2 * b, cout)
      dk = jnp.einsum("uvbi,uvbo->uvio", x12, dy, precision=precision)  # (N, V, 2Cin, Cout)
      dkf.append(jnp.stack([dk[:, :, :cin], dk[:, :, cin:]]))
      k12 = jnp.concatenate([kr, ki], axis=2)  # (N, V, 2Cin, Cout)
      dx12 = dx12 + jnp.einsum("uvbo,uvio->uvbi", dy, k12, precision=precision)
  if cin > 1:
    dx1, dx2 = dx12[..., :cin], dx12[..., cin:]
    dxr = dx1[:, :, :b] + dx2[:, :, b:]
    dxi = dx1[:, :, b:] - dx2[:, :, :b]
  prep_t = jax.linear_transpose(lambda x, w: _fft_prepare(x, w, num_scales, mode), x, weight)
  dx, dw = prep_t((dxr, dxi, jnp.stack(dkf)))
  return dx, dw, dbias


def _siconv_fft_reference(x: jax.Array, weight: jax.Array, bias: jax.Array, num_scales: int, mode: str,
                precision) -> jax.Array:
  """The previous FFT form (irfft2 + crop + mask); kept for benchmarks."""
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


def _resolve_impl(x: jax.Array, impl: str) -> str:
  """The path, "fft" or "direct", for an input (B, H, W, C): auto takes fft on square inputs;
  an explicit fft on a non-square input is a ValueError."""
  square = x.shape[1] == x.shape[2]
  if impl == "auto":
    return "fft" if square else "direct"
  if impl == "fft" and not square:
    raise ValueError(f"impl='fft' needs a square input, got {x.shape[1]}x{x.shape[2]}; "
                     "use impl='direct' or 'auto'")
  return impl


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
  if _resolve_impl(x, impl) == "fft":
    return _siconv_fft(x, weight, bias, num_scales, mode, precision)
  return _siconv_direct(x, weight, bias, num_scales, mode, precision)


POOL_MODES_FUSED = ("pixel",)


def siconv2d_pool(x: jax.Array, weight: jax.Array, bias: jax.Array, *, num_scales: int,
                  mode: str = "bicubic", pool: str = "pixel", impl: str = "auto",
                  precision=None) -> tuple[jax.Array, jax.Array]:
  """``scale_pool(siconv2d(x, ...), pool)`` without materialising the (B, S, H, W, C) output.

  The FFT path is `siconv_pool.siconv2d_pixel_pool`: scale by scale, keeping the running maximum
  and its scale index (the zero ring of every scale takes part in the max; ties go to the lowest
  scale, as ``jnp.argmax``), with a custom VJP that routes the pooled gradient to the winning
  scale. Outputs, indices and gradients equal those of ``scale_pool(siconv2d(...), pool)`` (to
  float rounding).

  Args:
    x, weight, bias, num_scales, mode, impl, precision: as for ``siconv2d`` (the FFT path computes
      its matmuls at full float32 precision whatever ``precision`` says).
    pool: scale pooling mode; only ``"pixel"`` is fused.

  Returns:
    ``(pooled, indices)``: pooled (B, H-k+1, W-k+1, Cout) and int32 scale indices of the same
    shape.

  Raises:
    ValueError: as ``siconv2d``, or a pool mode other than ``"pixel"``.
  """
  if pool not in POOL_MODES_FUSED:
    raise ValueError(f"siconv2d_pool fuses only {POOL_MODES_FUSED}, not {pool!r}; use "
                     "scale_pool(siconv2d(...), pool)")
  _check_args(x, weight, bias, num_scales, mode, impl)
  if _resolve_impl(x, impl) == "fft":
    from stir_jax.layers.siconv_pool import siconv2d_pixel_pool  # pylint: disable=g-import-not-at-top
    return siconv2d_pixel_pool(x, weight, bias, num_scales=num_scales, mode=mode)
  return scale_pool(_siconv_direct(x, weight, bias, num_scales, mode, precision), pool)


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
    pool: None, or "pixel" to return ``siconv2d_pool``'s (pooled, indices) instead of the stack of
      scales (same parameters, much less memory and time).
  """
  features: int
  kernel_size: int = 7
  num_scales: Optional[int] = None
  mode: str = "bicubic"
  impl: str = "auto"
  pool: Optional[str] = None

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
    if self.pool is not None:
      return siconv2d_pool(x, kernel, bias, num_scales=num_scales, mode=self.mode, pool=self.pool,
                           impl=self.impl)
    return siconv2d(x, kernel, bias, num_scales=num_scales, mode=self.mode, impl=self.impl)
