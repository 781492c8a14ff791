"""SiConv2d fused with pixel-wise scale pooling, in an FFT form laid out for CPU matmuls.

``siconv2d_pixel_pool(x, weight, bias, num_scales=S)`` returns what
``scale_pool(siconv2d(x, weight, bias, num_scales=S), "pixel")`` returns, (pooled, indices), without
ever building the (B, S, H, W, C) stack, and with a hand-written backward pass.

The maths is the FFT form of `stir_jax.layers.siconv` (one input spectrum shared by all scales;
scale i's kernel spectrum is ``G_i W H_i^T``; a per-frequency contraction over input channels;
a cropped inverse DFT as two real matmuls). What differs is the layout, chosen so that every
matmul is a plain GEMM and nothing is transposed per scale:

* the input spectrum is kept as ``A[r, u, v, b, (x, c)]`` with ``A[0] = [X_re, -X_im]`` and
  ``A[1] = [X_im, X_re]``, so that ``Y[r] = sum_(x,c) A[r, ..., (x, c)] K[x, ..., c, o]`` gives the real
  (r = 0) and imaginary (r = 1) part of the output spectrum, already in the (r, u) row order the
  inverse DFT along u consumes;
* that per-frequency contraction is a broadcast multiply-and-sum, which XLA:CPU runs several times
  faster than a batched matmul of 1740 (32 x 16) @ (16 x 32) products;
* scale i's kernel spectrum is one (2N x 2k) @ (2k x V C O) GEMM inside the loop, instead of a
  (S, 2, N, V, C, O) tensor for all scales;
* outputs are (H, W, B, C) inside the layer; the running maximum over scales is updated on each
  scale's valid square only; the zero border rings of the reference (each scale is zero-padded to
  the size of scale 0) enter once at the end.

Equivariance: as ``siconv2d`` followed by the pixel pool (exact for translations on the valid
region, approximate for rescaling).
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from stir_jax.layers import siconv as _si

_HIGHEST = jax.lax.Precision.HIGHEST


@functools.lru_cache(maxsize=None)
def _operators(n: int, k: int, num_scales: int, mode: str):
  """Constants: kernel-spectrum factors and each scale's cropped inverse DFT, in GEMM layouts.

  Returns (g2, h_re, h_im, inverse) with
    g2: (S, 2N, 2k): rows (x, u), columns (re/im of the rDFT side, tap).
    h_re, h_im: (S, V, k).
    inverse: per scale (e, f): e (2m, 2N) rows (p, x), columns (r, u); f (m, 2V) rows q,
      columns (x, v); see `siconv._inverse_operator`.
  """
  g2, h_re, h_im = _si._spectrum_operators(n, k, num_scales, mode)
  g2 = np.ascontiguousarray(g2.reshape(num_scales, 2 * n, 2 * k))
  o0 = n - k + 1
  inverse = []
  for i in range(num_scales):
    e2, f2 = _si._inverse_operator(n, o0, i)           # (2, m, 2, N), (m, V, 2)
    m = e2.shape[1]
    e = np.ascontiguousarray(e2.transpose(1, 0, 2, 3).reshape(2 * m, 2 * n))
    f = np.ascontiguousarray(f2.transpose(0, 2, 1).reshape(m, -1))
    inverse.append((e, f))
  return g2, h_re, h_im, tuple(inverse)


@functools.lru_cache(maxsize=None)
def _ring_indices(o0: int, num_scales: int) -> tuple[np.ndarray, np.ndarray]:
  """Per pixel of the o0 x o0 output: the first scale whose zero ring covers it, and whether any does.

  A pixel at distance d from the border is valid for scales 0..d; scale d + 1 (if it exists) pads it
  with zero. Returns (first_ring (o0, o0) int32, has_ring (o0, o0) bool).
  """
  idx = np.arange(o0)
  d = np.minimum(idx, o0 - 1 - idx)
  d2 = np.minimum(d[:, None], d[None, :])
  return (d2 + 1).astype(np.int32), d2 + 1 < num_scales


def _dims(x, weight):
  """(B, N, C, k, O, o0, V) of an input (B, N, N, C) and kernels (k, k, C, O)."""
  b, n, _, c = x.shape
  k, _, _, o = weight.shape
  return b, n, c, k, o, n - k + 1, n // 2 + 1


def _half_kernels(w, num_scales, n, mode):
  """t2 (S, 2k, V * I * J): the rDFT side (re; im) of every scale's kernel, for w (k, k, I, J)."""
  k = w.shape[0]
  _, h_re, h_im, _ = _operators(n, k, num_scales, mode)
  t_re = jnp.einsum("svb,abio->savio", jnp.asarray(h_re, w.dtype), w, precision=_HIGHEST)
  t_im = jnp.einsum("svb,abio->savio", jnp.asarray(h_im, w.dtype), w, precision=_HIGHEST)
  return jnp.concatenate([t_re, t_im], axis=1).reshape(num_scales, 2 * k, -1)


def _prepare(x, weight, num_scales, mode):
  """A (2, N, V, B, 2C) input spectrum and t2 (S, 2k, V C O) half-transformed kernels."""
  xf = jnp.fft.rfft2(jnp.transpose(x, (1, 2, 0, 3)), axes=(0, 1))      # (N, V, B, C)
  xr, xi = xf.real, xf.imag
  a = jnp.stack([jnp.concatenate([xr, -xi], -1), jnp.concatenate([xi, xr], -1)])
  # A hint to materialise A once rather than recompute it in every scale's product (XLA:CPU drops
  # optimisation barriers before fusion, so on CPU this is a no-op).
  a = jax.lax.optimization_barrier(a)
  return a, _half_kernels(weight.astype(x.dtype), num_scales, x.shape[1], mode)


def _kernel_spectrum(g2_i, t2_i, n, v, c, o):
  """Scale i's conjugate kernel spectrum (2, N, V, C, O): one GEMM."""
  return jnp.dot(g2_i, t2_i, precision=_HIGHEST).reshape(2, n, v, c, o)


def _product(a, kf):
  """Y[r, u, v, b, o] = sum_(x, c) A[r, u, v, b, (x, c)] K[x, u, v, c, o].

  Two broadcast multiply-and-sums over the second-to-last axis, one per x, on the contiguous halves
  of K: on CPU several times faster than a batched matmul over (u, v) or a sum over the
  transposed (x, c) pair (which XLA fuses into a strided read).
  """
  c = kf.shape[3]
  return (jnp.sum(a[..., :c, None] * kf[0][None, :, :, None], axis=-2)
          + jnp.sum(a[..., c:, None] * kf[1][None, :, :, None], axis=-2))


def _product_transpose(a, kf_t, dy):
  """Cotangents of `_product` given K with its last two axes swapped, kf_t (2, N, V, O, C).

  Returns dA as its two halves along the last axis, each (2, N, V, B, C), and dK (2, N, V, C, O).
  """
  two, n, v, b, c2 = a.shape
  da = tuple(jnp.sum(dy[..., :, None] * kf_t[x][None, :, :, None], axis=-2) for x in range(2))
  # dK[x, u, v, c, o] = sum_(r, b) A[r, u, v, b, (x, c)] dY[r, u, v, b, o], written as 2B
  # broadcast products: a reduction over (r, b) runs about 4x slower here.
  dk = None
  for r in range(two):
    for bb in range(b):
      term = a[r, :, :, bb, :, None] * dy[r, :, :, bb, None, :]
      dk = term if dk is None else dk + term
  c = c2 // 2
  return da, jnp.stack([dk[:, :, :c], dk[:, :, c:]])


def _scale_output(e, f, y_spec, n, v, b, o):
  """Scale i on its valid square, (m, m, B, O), from its spectrum Y (2, N, V, B, O)."""
  m = f.shape[0]
  z = jnp.dot(e, y_spec.reshape(2 * n, v * b * o), precision=_HIGHEST)   # (p, x) x (v, b, o)
  z = z.reshape(m, 2 * v, b * o)
  fb = jnp.broadcast_to(f, (m, m, 2 * v))
  y = jax.lax.dot_general(fb, z, (((2,), (1,)), ((0,), (0,))), precision=_HIGHEST)
  return y.reshape(m, m, b, o)                                            # (p, q, b, o)


def _exact_zero_from(y_spec):
  """+0.0 or -0.0, picked by one element of y_spec: adding it leaves any value unchanged.

  It gives the spectrum a second, 5-D consumer. Otherwise XLA:CPU fuses the reshape that feeds the
  inverse-DFT GEMM into the product's loop, which then runs over a 2-D shape about 3-4x slower
  (measured: product + GEMM 22.7 ms alone against 6.3 ms with this consumer).
  """
  zero = jnp.zeros((), y_spec.dtype)
  return jnp.where(y_spec[(0,) * y_spec.ndim] > 0, zero, -zero)


def _forward(x, weight, bias, num_scales, mode):
  b, n, c, k, o, o0, v = _dims(x, weight)
  dt = x.dtype
  g2, _, _, inverse = _operators(n, k, num_scales, mode)
  a, t2 = _prepare(x, weight, num_scales, mode)
  best = idx = None
  for i in range(num_scales):
    kf = _kernel_spectrum(jnp.asarray(g2[i], dt), t2[i], n, v, c, o)
    e, f = (jnp.asarray(z, dt) for z in inverse[i])
    y_spec = _product(a, kf)
    y = _scale_output(e, f, y_spec, n, v, b, o) + (bias.astype(dt) + _exact_zero_from(y_spec))
    if best is None:
      best, idx = y, jnp.zeros(y.shape, jnp.int32)
      continue
    region = (slice(i, o0 - i), slice(i, o0 - i))
    old, old_idx = best[region], idx[region]
    better = y > old  # strict: ties keep the lower scale, as argmax
    best = best.at[region].set(jnp.where(better, y, old))
    idx = idx.at[region].set(jnp.where(better, jnp.int32(i), old_idx))
  # The zero rings: pixel (p, q) first meets a zero at scale d + 1.
  first_ring, has_ring = (jnp.asarray(z) for z in _ring_indices(o0, num_scales))
  ring_wins = (has_ring[:, :, None, None]) & (best < 0)
  best = jnp.where(ring_wins, jnp.zeros((), dt), best)
  idx = jnp.where(ring_wins, first_ring[:, :, None, None], idx)
  return best, idx, a


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4))
def _pool_hwbc(x, weight, bias, num_scales, mode):
  best, idx, _ = _forward(x, weight, bias, num_scales, mode)
  return best, idx


def _pool_fwd(x, weight, bias, num_scales, mode):
  best, idx, a = _forward(x, weight, bias, num_scales, mode)
  return (best, idx), (x, weight, a, idx)


def _pool_bwd(num_scales, mode, res, cts):
  x, weight, a, idx = res
  g = cts[0]                                                              # (o0, o0, B, O)
  b, n, c, k, o, o0, v = _dims(x, weight)
  dt = a.dtype
  g2, _, _, inverse = _operators(n, k, num_scales, mode)
  # The kernels with (C, O) swapped: the spectra for dA come out as (2, N, V, O, C).
  t2_t = _half_kernels(jnp.transpose(weight, (0, 1, 3, 2)).astype(dt), num_scales, n, mode)
  da = [jnp.zeros(a.shape[:-1] + (c,), dt)] * 2  # the two halves of A's last axis
  dt2 = []
  dbias = jnp.zeros((o,), dt)
  for i in range(num_scales):
    region = (slice(i, o0 - i), slice(i, o0 - i))
    gi = jnp.where(idx[region] == i, g[region], jnp.zeros((), g.dtype)).astype(dt)
    m = gi.shape[0]
    dbias = dbias + jnp.sum(gi, axis=(0, 1, 2))
    e, f = (jnp.asarray(z, dt) for z in inverse[i])
    fb = jnp.broadcast_to(f, (m, m, 2 * v))
    dz = jax.lax.dot_general(fb, gi.reshape(m, m, b * o), (((1,), (1,)), ((0,), (0,))),
                             precision=_HIGHEST)                          # (p, (x, v), (b, o))
    dy = jnp.dot(e.T, dz.reshape(2 * m, v * b * o), precision=_HIGHEST)  # ((r, u), (v, b, o))
    dy = dy.reshape(2, n, v, b, o)
    kf_t = _kernel_spectrum(jnp.asarray(g2[i], dt), t2_t[i], n, v, o, c)
    da_i, dk = _product_transpose(a, kf_t, dy)
    da = [acc + d for acc, d in zip(da, da_i)]
    dt2.append(jnp.dot(jnp.asarray(g2[i], dt).T, dk.reshape(2 * n, -1), precision=_HIGHEST)
               + _exact_zero_from(dk))
  _, prep_vjp = jax.vjp(lambda x, w: _prepare(x, w, num_scales, mode), x, weight)
  dx, dw = prep_vjp((jnp.concatenate(da, axis=-1), jnp.stack(dt2)))
  return dx, dw, dbias


_pool_hwbc.defvjp(_pool_fwd, _pool_bwd)


def siconv2d_pixel_pool(x: jax.Array, weight: jax.Array, bias: jax.Array, *, num_scales: int,
                        mode: str = "bicubic") -> tuple[jax.Array, jax.Array]:
  """``scale_pool(siconv2d(x, weight, bias, num_scales=S, mode=mode), "pixel")`` in one pass.

  Args:
    x: (B, N, N, Cin), square.
    weight: (k, k, Cin, Cout); bias: (Cout,).
    num_scales: S; must equal ``siconv.num_scales_for(N, k)``.
    mode: kernel interpolation mode.

  Returns:
    pooled (B, o0, o0, Cout) with o0 = N - k + 1, and indices (B, o0, o0, Cout) int32: the scale
    with the largest response per output (ties: the lowest scale; a zero border ring counts as that
    scale's response).
  """
  _si._check_args(x, weight, bias, num_scales, mode, "fft")
  if x.shape[1] != x.shape[2]:
    raise ValueError(f"siconv2d_pixel_pool needs a square input, got {x.shape[1]}x{x.shape[2]}")
  best, idx = _pool_hwbc(x, weight, bias, num_scales, mode)
  return jnp.transpose(best, (2, 0, 1, 3)), jnp.transpose(idx, (2, 0, 1, 3))
