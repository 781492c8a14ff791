"""The exact FFT form of SiConv2d, laid out for CPU matmuls, with scale pooling fused in.

The maths. With N = H = W, a circular cross-correlation equals the valid one on the valid region.
Scale i's resized kernel ``A_i W A_i^T`` (A_i: (k + 2i, k), see ``interpolation_matrix``, with the
``k / t`` factor on each side) is embedded at offset ``-i (mod N)``, so that its valid outputs land
at ``[i, o0 - i)``, exactly where the reference pads them (o0 = N - k + 1). Its conjugate spectrum is
``G_i W H_i^T`` with the constant matrices ``G_i = conj(DFT_N(P_i A_i))`` (N x k) and ``H_i``, the
first V = N//2 + 1 rows of ``G_i``. One input spectrum is shared by all scales; per scale, a
contraction over input channels at every frequency gives the output spectrum, and a cropped inverse
DFT (two real matmuls) gives the valid square.

The layout. Every matmul is a plain GEMM and the forward pass transposes nothing per scale:

* the input spectrum is kept as ``A[r, u, v, b, (x, c)]`` with ``A[0] = [X_re, -X_im]`` and
  ``A[1] = [X_im, X_re]``, so that ``Y[r] = sum_(x,c) A[r, ..., (x, c)] K[x, ..., c, o]`` gives the
  real (r = 0) and imaginary (r = 1) part of the output spectrum, already in the (r, u) row order
  the inverse DFT along u consumes;
* that per-frequency contraction is a broadcast multiply-and-sum, which XLA:CPU runs several times
  faster than a batched matmul of N V (2B x C) @ (C x O) products;
* scale i's kernel spectrum is one (2N x 2k) @ (2k x V C O) GEMM inside the loop, instead of a
  (S, 2, N, V, C, O) tensor for all scales;
* outputs are (H, W, B, C) inside; each scale's valid square is computed once and then reduced:
  stacked (``siconv2d_fft``) or pooled on the fly (``siconv2d_pool_fft``: a running maximum per
  pixel, or a running choice of one scale per (b, c) for slice pooling), so the pooled forms never
  build the (B, S, H, W, C) stack. Energy pooling scores every scale without forming its spectrum
  (the energy is linear in the input spectrum and the kernels: `_energy_scores`), then forms only
  each (b, c)'s chosen spectrum, with its own small kernel GEMM (`_gathered_kernels`), and runs one
  inverse DFT (`_energy_gathered`). The backward pass is written by hand: scale by scale for the
  stack and the pixel pool; for slice and energy pooling, where each (b, c) takes its gradient from
  one scale only, through each (b, c)'s chosen kernel (`_backward_gathered`);
* the program's size does not depend on the batch (no loop over batch elements) and it embeds no
  large constants: the DFT factors are computed in the program from iota, cos and sin, once per
  layer (`_kernel_factors`, `_inverse_tables`); only the (S, N, k) resize taps are tabulated. The
  scales stay a Python loop, faster here than a scan (see `_forward`); eager (untraced) calls,
  which compile their program for one use, take a scan instead (`_forward_scan`), which compiles in
  a fraction of the time.

Callers check shapes (see `stir_jax.layers.siconv`, whose ``siconv2d`` and ``siconv2d_pool`` take
this path for square inputs). Everything runs in float32 (at least) with HIGHEST products; the
results are cast back to the promoted dtype of the arguments (bfloat16 and float16 work). That is
float32-exact on CPU and GPU; on TPU, XLA's FFT ignores precision (jax issue 9881), so
``impl="auto"`` never takes this form there (`stir_jax.layers.forms`).

Equivariance: as ``siconv2d`` (exact for translations on the valid region, approximate for
rescaling), followed by the chosen scale pool.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from stir_jax.layers.dtypes import float32_inside
from stir_jax.layers.interpolation import interpolation_matrix

POOLS = ("pixel", "slice", "energy")

_HIGHEST = jax.lax.Precision.HIGHEST


@functools.lru_cache(maxsize=None)
def _embedded_taps(n: int, k: int, num_scales: int, mode: str) -> np.ndarray:
  """(S, N, k) float32, the only tabulated constant: scale i's 1-D resize matrix ``A_i`` (with its
  ``k / t`` factor) embedded at rows ``(tap - i) mod N``, i.e. ``P_i A_i``."""
  emb = np.zeros((num_scales, n, k))
  for i in range(num_scales):
    t = k + 2 * i
    a = interpolation_matrix(k, t, mode) * (k / t)       # (t, k)
    np.add.at(emb[i], (np.arange(t) - i) % n, a)         # kernel tap a sits at (a - i) mod N
  emb = emb.astype(np.float32)
  emb.setflags(write=False)
  return emb


def _phases(rows: jax.Array, cols: jax.Array, n: int, dtype) -> tuple[jax.Array, jax.Array]:
  """cos and sin of ``2 pi rows cols / n``, the angle reduced mod n in integers first (exact)."""
  angle = ((rows[:, None] * cols[None, :]) % n).astype(dtype) * (2 * np.pi / n)
  return jnp.cos(angle), jnp.sin(angle)


def _kernel_factors(n: int, k: int, num_scales: int, mode: str, dtype) -> jax.Array:
  """g2 (S, 2N, 2k): ``[[g_re, -g_im], [g_im, g_re]]`` with rows (x, u), where
  ``G_i = conj(DFT_N(P_i A_i))``; ``g2[i] @ [t_re; t_im]`` is ``[re; im]`` of ``G_i t``.

  Computed in the program (a DFT matrix from iota, cos and sin, times the small tabulated
  `_embedded_taps`) rather than embedded as a constant: the exported program stays small. Its first
  V = N//2 + 1 rows of each block are the rDFT side ``H_i``.
  """
  u = jnp.arange(n)
  cos, sin = _phases(u, u, n, dtype)                    # conj(exp(-i th)) = cos + i sin
  emb = jnp.asarray(_embedded_taps(n, k, num_scales, mode), dtype)
  g_re = jnp.einsum("un,snk->suk", cos, emb, precision=_HIGHEST)
  g_im = jnp.einsum("un,snk->suk", sin, emb, precision=_HIGHEST)
  return jnp.concatenate([jnp.concatenate([g_re, -g_im], -1),
                          jnp.concatenate([g_im, g_re], -1)], 1)


def _inverse_tables(n: int, k: int, dtype) -> tuple[jax.Array, jax.Array]:
  """The cropped inverse DFT of every output row p in [0, o0), as two tables (e, f); scale i
  uses rows [i, o0 - i) of both (`_inverse_factors`):

  e (o0, 2, 2N), [p, x, (r, u)]: the r part of Y[u] to the x part of
  ``sum_u exp(2 pi i u p / N) Y[u]``;
  f (o0, 2V), columns (x, v): ``y[q] = sum_(x, v) f[q, (x, v)] Z_x[v]``, the real part of the
  inverse half-spectrum sum with its 1/N^2 and Hermitian weights (1 for v = 0 and v = N/2, else 2).
  Exact for spectra of real signals, as ``irfft2`` is. Computed in the program from iota, once per
  layer (see `_kernel_factors`).
  """
  o0, v = n - k + 1, n // 2 + 1
  p = jnp.arange(o0)
  cos, sin = _phases(p, jnp.arange(n), n, dtype)                            # (o0, N)
  e = jnp.stack([jnp.concatenate([cos, -sin], 1), jnp.concatenate([sin, cos], 1)], 1)
  cols = jnp.arange(v)
  weights = jnp.where((cols == 0) | (2 * cols == n), 1.0, 2.0).astype(dtype) / (n * n)
  cos, sin = _phases(p, cols, n, dtype)                                     # (o0, V)
  return e, jnp.concatenate([cos * weights, -sin * weights], 1)


def _inverse_factors(tables, i: int) -> tuple[jax.Array, jax.Array]:
  """Scale i's (e (2m, 2N), rows (p, x); f (m, 2V)) for p, q in [i, o0 - i), m = o0 - 2i."""
  e, f = tables
  o0 = f.shape[0]
  return e[i:o0 - i].reshape(2 * (o0 - 2 * i), -1), f[i:o0 - i]


def _border_distance(o0: int) -> jax.Array:
  """(o0, o0) int32: each output pixel's distance d to the border. It is valid (inside
  ``[i, o0 - i)^2``) for scales 0..d; scale d + 1, if it exists, pads it with zero."""
  idx = jnp.arange(o0)
  d = jnp.minimum(idx, o0 - 1 - idx)
  return jnp.minimum(d[:, None], d[None, :]).astype(jnp.int32)


def _dims(x, weight):
  """(B, N, C, k, O, o0, V) of an input (B, N, N, C) and kernels (k, k, C, O)."""
  b, n, _, c = x.shape
  k, _, _, o = weight.shape
  return b, n, c, k, o, n - k + 1, n // 2 + 1


def _half_kernels(w, g2, v):
  """t2 (S, 2k, V * I * J): the rDFT side (re; im) of every scale's kernel, for w (k, k, I, J);
  ``H_i`` is the first V rows of each block of g2 (see `_kernel_factors`)."""
  num_scales, two_n, two_k = g2.shape
  k = two_k // 2
  h_re, h_im = g2[:, :v, :k], g2[:, two_n // 2:two_n // 2 + v, :k]
  t_re = jnp.einsum("svb,abio->savio", h_re, w, precision=_HIGHEST)
  t_im = jnp.einsum("svb,abio->savio", h_im, w, precision=_HIGHEST)
  return jnp.concatenate([t_re, t_im], axis=1).reshape(num_scales, 2 * k, -1)


def _prepare(x, weight, g2):
  """A (2, N, V, B, 2C) input spectrum and t2 (S, 2k, V C O) half-transformed kernels."""
  xf = jnp.fft.rfft2(jnp.transpose(x, (1, 2, 0, 3)), axes=(0, 1))      # (N, V, B, C)
  xr, xi = xf.real, xf.imag
  a = jnp.stack([jnp.concatenate([xr, -xi], -1), jnp.concatenate([xi, xr], -1)])
  # A hint to materialise A once rather than recompute it in every scale's product (XLA:CPU drops
  # optimisation barriers before fusion, so on CPU this is a no-op).
  a = jax.lax.optimization_barrier(a)
  return a, _half_kernels(weight.astype(x.dtype), g2, x.shape[1] // 2 + 1)


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


def _product_transpose(a_t, kf_t, dy):
  """Cotangents of `_product` given A as a_t (N, V, 2C, (B, 2)) (`_batch_minor`), K with its last
  two axes swapped, kf_t (2, N, V, O, C), and dY (2, N, V, B, O).

  Returns dA as its two halves along the last axis, each (2, N, V, B, C), and dK (2, N, V, C, O).
  """
  _, n, v, b, o = dy.shape
  da = tuple(jnp.sum(dy[..., :, None] * kf_t[x][None, :, :, None], axis=-2) for x in range(2))
  # dK[x, u, v, c, o] = sum_(r, b) A[r, u, v, b, (x, c)] dY[r, u, v, b, o]: a matmul per frequency
  # with the (b, r) contraction minor in both operands (A is laid out so once per layer). Measured
  # on the 2-core CPU at layer 2's shapes (58x58, 16->32): 5.0 ms at B=16 and 17 ms at B=64, against
  # 4.7 and 34 ms for the former sum of 2B broadcast products unrolled over the batch (which also
  # made the program grow with B), 9.3 and 47 ms with A transposed per scale and 7.1 and 39 ms as a
  # plain einsum.
  dy_t = jnp.moveaxis(dy, 0, 3).reshape(n, v, 2 * b, o)                     # (u, v, (b, r), o)
  dk = jax.lax.dot_general(a_t, dy_t, (((3,), (2,)), ((0, 1), (0, 1))), precision=_HIGHEST)
  c = dk.shape[2] // 2
  return da, jnp.stack([dk[:, :, :c], dk[:, :, c:]])


def _batch_minor(a):
  """A (2, N, V, B, 2C) as (N, V, 2C, (B, 2)): the layout of dK's contraction."""
  two, n, v, b, c2 = a.shape
  return jnp.transpose(a, (1, 2, 4, 3, 0)).reshape(n, v, c2, b * two)


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


def _pixel_max(scales, o0, num_scales):
  """Running per-pixel maximum and its scale (ties: the lower scale), zero rings included."""
  best = idx = None
  for i, y in enumerate(scales):
    if best is None:
      best, idx = y, jnp.zeros(y.shape, jnp.int32)
      continue
    region = (slice(i, o0 - i), slice(i, o0 - i))
    old, old_idx = best[region], idx[region]
    better = y > old  # strict: ties keep the lower scale, as argmax
    best = best.at[region].set(jnp.where(better, y, old))
    idx = idx.at[region].set(jnp.where(better, jnp.int32(i), old_idx))
  # The zero rings: pixel (p, q) first meets a zero at scale d + 1, if there is one.
  first_ring = (_border_distance(o0) + 1)[:, :, None, None]
  ring_wins = (first_ring < num_scales) & (best < 0)
  best = jnp.where(ring_wins, jnp.zeros((), best.dtype), best)
  idx = jnp.where(ring_wins, first_ring, idx)
  return best, idx


def _slice_choice(scales, o0):
  """Running choice of one whole (zero-padded) scale per (b, o), as ``scale_pool`` slice: the
  scale holding the largest value (a zero ring counts). Ties keep the lower scale, as argmax over
  the scale-major flattening does. (Energy pooling: `_energy_gathered`.)
  """
  best = score = None
  scores = []
  for i, y in enumerate(scales):
    s = jnp.max(y, axis=(0, 1))
    if i > 0:
      s = jnp.maximum(s, jnp.zeros((), s.dtype))  # the ring's zeros
    scores.append(s)
    if best is None:
      best, score = y, s
      continue
    better = s > score
    score = jnp.where(better, s, score)
    # Only the valid square is written; what a winner leaves outside it is zeroed below. (An
    # elementwise select over the whole map here would chain all scales into one expression that
    # XLA:CPU then re-evaluates in every consumer.)
    region = (slice(i, o0 - i), slice(i, o0 - i))
    best = best.at[region].set(jnp.where(better, y, best[region]))
  # The chosen scales as one argmax over the stacked scores (ties: the lowest scale, as the running
  # choice), not the running selects: XLA:CPU would fuse that chain of S selects into every
  # consumer of the indices, and the backward pass masks each scale's spectrum with them.
  idx = jnp.argmax(jnp.stack(scores), axis=0).astype(jnp.int32)
  return jnp.where(_valid_for(idx, o0), best, jnp.zeros((), best.dtype)), idx


def _spectra_by_row(x):
  """The input spectrum as (2, B, N, C, V): real and imaginary part of ``rfft2`` over (H, W), the
  layout of the gathered product (`_gathered_product`): v minor, c next to it for the sum."""
  xf = jnp.fft.rfft2(x, axes=(1, 2))                                    # (B, N, V, C)
  xf = jnp.transpose(xf, (0, 1, 3, 2))
  return jnp.stack([xf.real, xf.imag])


def _by_output(t2, v, c):
  """t2 (S, 2k, V C O) of `_half_kernels` as (S, O, 2k, C V): each (scale, output channel) one
  contiguous block, the rows `_gathered_kernels` gathers."""
  num_scales, two_k, vco = t2.shape
  o = vco // (v * c)
  t2 = jnp.transpose(t2.reshape(num_scales, two_k, v, c, o), (0, 4, 1, 3, 2))
  return t2.reshape(num_scales, o, two_k, c * v)


def _gathered_kernels(g2, t2o, idx):
  """Every (b, o)'s conjugate kernel spectrum at its chosen scale idx (B, O): (B, O, 2N, C V),
  rows (x, u). One small GEMM per (b, o), ``g2[i] @ t2[i]`` for its i, instead of all S scales'
  spectra."""
  o = idx.shape[1]
  g2g = g2[idx]                                                         # (B, O, 2N, 2k)
  t2g = t2o[idx, jnp.arange(o)[None, :]]                                # (B, O, 2k, C V)
  return jax.lax.dot_general(g2g, t2g, (((3,), (2,)), ((0, 1), (0, 1))), precision=_HIGHEST), g2g


def _gathered_product(xs, kg):
  """Y (2, N, V, B, O), the chosen scale's output spectrum per (b, o), from the spectra xs
  (2, B, N, C, V) and the gathered kernels kg (B, O, 2N, C V): a complex product summed over c."""
  _, b, n, c, v = xs.shape
  o = kg.shape[1]
  kg = kg.reshape(b, o, 2, n, c, v)
  xre, xim = xs[0][:, None], xs[1][:, None]                            # (B, 1, N, C, V)
  kre, kim = kg[:, :, 0], kg[:, :, 1]                                   # (B, O, N, C, V)
  y_re = jnp.sum(xre * kre - xim * kim, axis=3)                         # (B, O, N, V)
  y_im = jnp.sum(xim * kre + xre * kim, axis=3)
  return jnp.transpose(jnp.stack([y_re, y_im]), (0, 3, 4, 1, 2))


def _energy_scores(a, g2, t2, tables, bias):
  """(S, B, O): every scale's energy (the sum of its valid square, plus bias times its area),
  without any scale's spectrum.

  The energy is linear in the output spectrum, ``sum_(r, u, v) W_i[r, u, v] Y_i[r, u, v]`` with
  ``W_i`` the sums of the inverse-DFT rows and columns over ``[i, o0 - i)``; and ``Y_i`` is linear
  in A and in t2. So the weights are folded into A (one multiply per frequency and scale), the
  result goes through ``g2[i]^T`` (one GEMM per scale, 2k rows instead of the spectrum's 2N by
  V C O), and meets t2 in a contraction over (y, a, v, c).
  """
  e, f = tables
  o0 = f.shape[0]
  num_scales, two_n, two_k = g2.shape
  n, v = two_n // 2, f.shape[1] // 2
  p = jnp.arange(o0)
  scale = jnp.arange(num_scales)[:, None]
  inside = ((p >= scale) & (p < o0 - scale)).astype(a.dtype)               # (S, o0)
  rows = jnp.einsum("sp,pxk->sxk", inside, e, precision=_HIGHEST)          # (S, x', (r, u))
  cols = jnp.dot(inside, f, precision=_HIGHEST).reshape(num_scales, 2, v)  # (S, x', v)
  wt = jnp.einsum("sxu,sxv->suv", rows, cols, precision=_HIGHEST)
  wt = wt.reshape(num_scales, 2, n, v)                                     # (S, r, u, v)
  c = a.shape[-1] // 2
  b = a.shape[3]
  # Aw[s, (x, u), v, b, c] = sum_r W[s, r, u, v] A[r, u, v, b, (x, c)]
  aw = (wt[:, 0, :, :, None, None] * a[0][None] + wt[:, 1, :, :, None, None] * a[1][None])
  aw = jnp.concatenate([aw[..., :c], aw[..., c:]], axis=1)               # (S, 2N, V, B, C)
  b1 = jax.lax.dot_general(g2, aw.reshape(num_scales, two_n, -1), (((1,), (1,)), ((0,), (0,))),
                           precision=_HIGHEST).reshape(num_scales, two_k, v, b, c)
  o = t2.shape[-1] // (v * c)
  t2 = t2.reshape(num_scales, two_k, v, c, o)
  scores = jnp.einsum("skvbc,skvco->sbo", b1, t2, precision=_HIGHEST)
  area = (o0 - 2 * jnp.arange(num_scales)).astype(a.dtype) ** 2
  return scores + bias * area[:, None, None]


def _energy_gathered(x, bias, g2, a, t2, tables, n, v, b, o):
  """Energy pooling: (pooled (o0, o0, B, O), idx (B, O)). The scores come from `_energy_scores`;
  then only the chosen scale's spectrum is formed per (b, o) (`_gathered_kernels`,
  `_gathered_product`) and one full-size inverse DFT gives every (b, o) its chosen scale's valid
  square (rows and columns ``[i, o0 - i)`` of the full one)."""
  o0 = tables[1].shape[0]
  idx = jnp.argmax(_energy_scores(a, g2, t2, tables, bias), axis=0).astype(jnp.int32)
  kg, _ = _gathered_kernels(g2, _by_output(t2, v, a.shape[-1] // 2), idx)
  y_spec = _gathered_product(_spectra_by_row(x), kg)
  e_full, f_full = _inverse_factors(tables, 0)
  y = _scale_output(e_full, f_full, y_spec, n, v, b, o) + (bias + _exact_zero_from(y_spec))
  return jnp.where(_valid_for(idx, o0), y, jnp.zeros((), y.dtype)), idx


def _backward_gathered(x, weight, g2, g, idx):
  """Cotangents (x, weight, bias) for slice and energy pooling: g (o0, o0, B, O) flows only into
  the chosen scale idx (B, O) of each (b, o), on that scale's valid square.

  Scale i's inverse DFT is the full one's rows and columns [i, o0 - i), so one full-size transpose
  of the masked cotangent gives every (b, o) its spectrum cotangent at once. That meets the
  (b, o)'s chosen kernel spectrum (`_gathered_kernels`) for x, and the input spectrum for the
  gathered kernel, which ``g2[i]^T`` takes back to t2 and a one-hot sum over the batch to each
  scale's block. `_backward_per_scale` computes the same (to float rounding:
  tests/layers/test_siconv.py) with one product over all (b, o) per scale, S times the work.
  """
  b, n, c, k, o, o0, v = _dims(x, weight)
  dt = g2.dtype
  num_scales = g2.shape[0]
  g_valid = jnp.where(_valid_for(idx, o0), g, jnp.zeros((), g.dtype)).astype(dt)
  dy = _spectrum_cotangent(_inverse_tables(n, k, dt), 0, g_valid, n, v, b, o)   # (2, N, V, B, O)
  dy = jnp.transpose(dy, (0, 3, 4, 1, 2))[..., None, :]                         # (2, B, O, N, 1, V)
  xs, spectra_vjp = jax.vjp(_spectra_by_row, x)
  t2o, kernels_vjp = jax.vjp(lambda w: _by_output(_half_kernels(w, g2, v), v, c), weight)
  kg, g2g = _gathered_kernels(g2, t2o, idx)
  kg = kg.reshape(b, o, 2, n, c, v)
  kre, kim = kg[:, :, 0], kg[:, :, 1]
  dxs = jnp.stack([jnp.sum(dy[0] * kre + dy[1] * kim, axis=1),
                   jnp.sum(dy[1] * kre - dy[0] * kim, axis=1)])          # (2, B, N, C, V)
  xre, xim = xs[0][:, None], xs[1][:, None]
  dkg = jnp.stack([dy[0] * xre + dy[1] * xim, dy[1] * xre - dy[0] * xim], axis=2)
  dkg = dkg.reshape(b, o, 2 * n, c * v)
  dt2g = jax.lax.dot_general(g2g, dkg, (((2,), (2,)), ((0, 1), (0, 1))),
                             precision=_HIGHEST)                        # (B, O, 2k, C V)
  onehot = (idx[:, :, None] == jnp.arange(num_scales)).astype(dt)        # (B, O, S)
  dt2o = jnp.einsum("bos,bor->sor", onehot, dt2g.reshape(b, o, -1), precision=_HIGHEST)
  (dx,) = spectra_vjp(dxs)
  (dw,) = kernels_vjp(dt2o.reshape(t2o.shape))
  return dx, dw, jnp.sum(g_valid, axis=(0, 1, 2))


def _valid_for(idx, o0):
  """(o0, o0, B, O) bool: whether each output pixel lies on the valid square of the scale idx
  (B, O) chose for its (b, o), i.e. not on that scale's zero ring (its distance to the border is
  at least the scale index)."""
  return _border_distance(o0)[:, :, None, None] >= idx


def _forward(x, weight, bias, num_scales, mode, pool):
  """(out, idx, A, g2): out (S, o0, o0, B, O) for pool None, else the pooled (o0, o0, B, O).

  The scales are a Python loop, unrolled in the program: each scale's valid square has its own
  size m = o0 - 2i, and a lax.scan needs one shape, i.e. every scale's inverse DFT at the full
  o0 x o0. Measured on the 2-core CPU (layer 2, batch 16, forward with the pixel pool): 545 ms
  unrolled against 956 ms as a scan over full-size scales (compilation 5.9 s against 0.9 s), so
  the loop stays unrolled. Its size does not depend on the batch.
  """
  b, n, c, k, o, o0, v = _dims(x, weight)
  dt = x.dtype
  g2 = _kernel_factors(n, k, num_scales, mode, dt)
  tables = _inverse_tables(n, k, dt)
  a, t2 = _prepare(x, weight, g2)

  def scales():
    for i in range(num_scales):
      kf = _kernel_spectrum(g2[i], t2[i], n, v, c, o)
      e, f = _inverse_factors(tables, i)
      y_spec = _product(a, kf)
      yield _scale_output(e, f, y_spec, n, v, b, o) + (bias.astype(dt) + _exact_zero_from(y_spec))

  if pool is None:
    pad = lambda i: ((i, i), (i, i), (0, 0), (0, 0))  # the zero ring of scale i
    return jnp.stack([jnp.pad(y, pad(i)) for i, y in enumerate(scales())]), None, a, g2
  if pool == "pixel":
    return (*_pixel_max(scales(), o0, num_scales), a, g2)
  if pool == "energy":
    return (*_energy_gathered(x, bias.astype(dt), g2, a, t2, tables, n, v, b, o), a, g2)
  return (*_slice_choice(scales(), o0), a, g2)


def _spectrum_cotangent(tables, i, gi, n, v, b, o):
  """The cotangent dY (2, N, V, B, O) of scale i's spectrum, given gi (m, m, B, O) on its valid
  square: the transpose of `_scale_output`."""
  e, f = _inverse_factors(tables, i)
  m = gi.shape[0]
  fb = jnp.broadcast_to(f, (m, m, f.shape[1]))
  dz = jax.lax.dot_general(fb, gi.reshape(m, m, b * o), (((1,), (1,)), ((0,), (0,))),
                           precision=_HIGHEST)                            # (p, (x, v), (b, o))
  dy = jnp.dot(e.T, dz.reshape(2 * m, v * b * o), precision=_HIGHEST)    # ((r, u), (v, b, o))
  return dy.reshape(2, n, v, b, o)


def _backward(x, weight, a, g2, num_scales, scale_spectrum):
  """Cotangents (x, weight), given scale_spectrum(i) -> dY (2, N, V, B, O), the cotangent of scale
  i's output spectrum. Unrolled over the scales as `_forward` is."""
  b, n, c, k, o, o0, v = _dims(x, weight)
  dt = a.dtype
  # The kernels with (C, O) swapped: the spectra for dA come out as (2, N, V, O, C).
  t2_t = _half_kernels(jnp.transpose(weight, (0, 1, 3, 2)).astype(dt), g2, v)
  a_t = _batch_minor(a)
  da = [jnp.zeros(a.shape[:-1] + (c,), dt)] * 2  # the two halves of A's last axis
  dt2 = []
  for i in range(num_scales):
    kf_t = _kernel_spectrum(g2[i], t2_t[i], n, v, o, c)
    da_i, dk = _product_transpose(a_t, kf_t, scale_spectrum(i))
    da = [acc + d for acc, d in zip(da, da_i)]
    dt2.append(jnp.dot(g2[i].T, dk.reshape(2 * n, -1), precision=_HIGHEST)
               + _exact_zero_from(dk))
  _, prep_vjp = jax.vjp(lambda x, w: _prepare(x, w, g2), x, weight)
  return prep_vjp((jnp.concatenate(da, axis=-1), jnp.stack(dt2)))


def _backward_per_scale(x, weight, a, g2, num_scales, scale_cotangent):
  """Cotangents (x, weight, bias), given scale_cotangent(i, region) -> (m, m, B, O) on scale i's
  valid square (the stack, and the pixel pool: any scale may receive any pixel's cotangent)."""
  b, n, c, k, o, o0, v = _dims(x, weight)
  dt = a.dtype
  tables = _inverse_tables(n, k, dt)
  regions = [(slice(i, o0 - i), slice(i, o0 - i)) for i in range(num_scales)]
  cotangents = [scale_cotangent(i, regions[i]).astype(dt) for i in range(num_scales)]
  dbias = sum(jnp.sum(gi, axis=(0, 1, 2)) for gi in cotangents)
  spectrum = lambda i: _spectrum_cotangent(tables, i, cotangents[i], n, v, b, o)
  return (*_backward(x, weight, a, g2, num_scales, spectrum), dbias)


def _forward_scan(x, weight, bias, num_scales, mode, pool):
  """`_forward`'s (out, idx) as a lax.scan over the scales, every scale at the full o0 x o0 size
  with its zero ring masked in: the same function (to float rounding), a few times cheaper to
  compile and slower to run (see `_forward`). Taken for eager (untraced) calls, such as an eager
  ``model.init``, which compile the program for a single use."""
  b, n, c, k, o, o0, v = _dims(x, weight)
  dt = x.dtype
  g2 = _kernel_factors(n, k, num_scales, mode, dt)
  e, f = _inverse_tables(n, k, dt)
  e = e.reshape(2 * o0, 2 * n)
  a, t2 = _prepare(x, weight, g2)
  dist = _border_distance(o0)[:, :, None, None]
  bias = bias.astype(dt)

  def scale(i):
    y_spec = _product(a, _kernel_spectrum(g2[i], t2[i], n, v, c, o))
    y = _scale_output(e, f, y_spec, n, v, b, o) + bias
    return jnp.where(dist >= i, y, jnp.zeros((), dt))          # valid on [i, o0 - i)^2, else 0

  steps = jnp.arange(1, num_scales)
  if pool is None:
    return jax.lax.map(scale, jnp.arange(num_scales)), None
  if pool == "pixel":
    def pixel_step(carry, i):
      best, idx = carry
      y = scale(i)
      better = y > best  # strict: ties keep the lower scale, as argmax
      return (jnp.where(better, y, best), jnp.where(better, i, idx)), None
    y0 = scale(0)
    (best, idx), _ = jax.lax.scan(pixel_step, (y0, jnp.zeros(y0.shape, jnp.int32)), steps)
    return best, idx

  def score(y):
    return jnp.max(y, axis=(0, 1)) if pool == "slice" else jnp.sum(y, axis=(0, 1))

  def slice_step(carry, i):
    best, best_score, idx = carry
    y = scale(i)
    s = score(y)
    better = s > best_score
    return (jnp.where(better, y, best), jnp.where(better, s, best_score),
            jnp.where(better, i, idx)), None

  y0 = scale(0)
  s0 = score(y0)
  (best, _, idx), _ = jax.lax.scan(slice_step, (y0, s0, jnp.zeros(s0.shape, jnp.int32)), steps)
  return best, idx


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4, 5))
def _siconv_hwbc(x, weight, bias, num_scales, mode, pool):
  """The stack (S, o0, o0, B, O) for pool None, else (pooled (o0, o0, B, O), indices)."""
  out, idx, _, _ = _forward(x, weight, bias, num_scales, mode, pool)
  return out if pool is None else (out, idx)


def _siconv_hwbc_fwd(x, weight, bias, num_scales, mode, pool):
  out, idx, a, g2 = _forward(x, weight, bias, num_scales, mode, pool)
  return (out if pool is None else (out, idx)), (x, weight, a, g2, idx)


def _siconv_hwbc_bwd(num_scales, mode, pool, res, cts):
  del mode  # in g2
  x, weight, a, g2, idx = res
  if pool in ("slice", "energy"):
    return _backward_gathered(x, weight, g2, cts[0], idx)
  if pool is None:
    cotangent = lambda i, region: cts[i][region]
  else:  # pixel: idx is (o0, o0, B, O), cropped to the region
    g = cts[0]
    cotangent = lambda i, region: jnp.where(idx[region] == i, g[region], jnp.zeros((), g.dtype))
  return _backward_per_scale(x, weight, a, g2, num_scales, cotangent)


_siconv_hwbc.defvjp(_siconv_hwbc_fwd, _siconv_hwbc_bwd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4, 5))
def _siconv_hwbc_eager(x, weight, bias, num_scales, mode, pool):
  """`_siconv_hwbc` with the primal computed by `_forward_scan` (cheap to compile); its
  derivatives are `_siconv_hwbc`'s."""
  out, idx = _forward_scan(x, weight, bias, num_scales, mode, pool)
  return out if pool is None else (out, idx)


_siconv_hwbc_eager.defvjp(_siconv_hwbc_fwd, _siconv_hwbc_bwd)


def _float32_inside(*arrays):
  """(the promoted dtype of arrays, the arrays cast to at least float32)."""
  dt = jnp.result_type(*arrays)
  inner = float32_inside(dt)
  return dt, tuple(a.astype(inner) for a in arrays)


def siconv2d_fft(x: jax.Array, weight: jax.Array, bias: jax.Array, num_scales: int,
                 mode: str, eager: bool = False) -> jax.Array:
  """``siconv2d``'s FFT path: x (B, N, N, C), weight (k, k, C, O), bias (O,) -> (B, S, o0, o0, O).

  Scale i holds its valid response plus bias on ``[i, o0 - i)^2`` and exactly 0 on the ring.
  Computed in float32 (at least); returned in the promoted dtype of x, weight and bias. ``eager``
  takes the scan over scales (`_forward_scan`: compiles in a fraction of the time, runs slower)
  for the forward pass; gradients are the same either way.
  """
  dt, (x, weight, bias) = _float32_inside(x, weight, bias)
  out = (_siconv_hwbc_eager if eager else _siconv_hwbc)(x, weight, bias, num_scales, mode, None)
  return jnp.transpose(out, (3, 0, 1, 2, 4)).astype(dt)


def siconv2d_pool_fft(x: jax.Array, weight: jax.Array, bias: jax.Array, num_scales: int,
                      mode: str, pool: str, eager: bool = False) -> tuple[jax.Array, jax.Array]:
  """``scale_pool(siconv2d_fft(x, ...), pool)`` for pool in `POOLS` (the caller checks it), without
  the stack.

  Returns pooled (B, o0, o0, O) and int32 indices: (B, o0, o0, O) for pixel, (B, O) for slice and
  energy (ties: the lowest scale; a zero border ring counts as that scale's response). Pooled in
  float32 (at least), returned in the promoted dtype of x, weight and bias. ``eager``: as
  `siconv2d_fft`.
  """
  dt, (x, weight, bias) = _float32_inside(x, weight, bias)
  fn = _siconv_hwbc_eager if eager else _siconv_hwbc
  best, idx = fn(x, weight, bias, num_scales, mode, pool)
  best = jnp.transpose(best, (2, 0, 1, 3)).astype(dt)
  return best, (jnp.transpose(idx, (2, 0, 1, 3)) if pool == "pixel" else idx)
