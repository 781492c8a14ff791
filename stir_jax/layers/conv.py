"""2-D and 3-D cross-correlation with a choice of algorithm: XLA's convolution or an exact FFT form.

Measured on the 2-core CPU this project is developed on (jaxlib 0.10.2, YNNPACK fusions off, see
`stir_jax.runtime.apply_xla_flags`; batch 16; ms for the forward pass, and for the jitted gradient of a sum of
squares with respect to the weights and to the input, each including its forward pass):

  layer                                        xla                fft
  7x7 16->32 on 58x58 (standard, layer 2)      16 / 41 / 42       33 / 48 / 56
  11x11 16->32 x5 groups, 'same' on 64x64 (xu*) 514 / 49681 / 1342 423 / 608 / 647
  15x15 16->32 x4 groups on 50x50 (SESN)       215 / 17974 / 879  123 / 183 / 200
  15x15 1->64 on 64x64 (SESN, layer 1)         8 / 20 / 153       38 / 61 / 60

(* Xu's layer 2 as one grouped convolution; `stir_jax.layers.xu` now runs one ungrouped
convolution per column over its kernel's support.)
Kernels larger than their input (fwd+bwd, ms; measured 2026-12-01, same machine):

  15x15 32->252, padding 7 on 14x14 (MNIST-scale SESN, layer 2)   6697 (fwd 2233)   156 (fwd 77)
  15x15 63->380, padding 7 on 7x7 (layer 3)                        947               233
  13x13 32->64, padding 6 on 12x12                                  501                22
  but 15x15 on 16x16: 195 / 165; 13x13 on 14x14: 126 / 154; 11x11 on 14x14: 94 / 107

XLA:CPU's weight gradient of a *grouped* convolution is pathologically slow, and so is any
convolution whose kernel is larger than its input, so `impl="auto"` takes the FFT form for those
on CPU and the direct form (XLA's convolution) everywhere else; `conv3d`'s "auto" takes the FFT
form on CPU (XLA:CPU's 3-D convolution is far slower) and the direct form elsewhere. On GPU and TPU
the reason does not apply (cuDNN and the TPU compiler handle grouped and 3-D convolutions
natively), and on TPU the FFT would not keep ``precision`` (jax issue 9881). The choices are the
rows of `stir_jax.layers.forms.FORM_TABLE` (documented in docs/precision.md), made per *lowering
platform* (`jax.lax.platform_dependent`), not by the backend of the process: a program exported
for "cuda" or "tpu" on a CPU host gets their choice. Both forms compute the same function to
float32 rounding (tests/layers/test_conv.py).

Dtypes: both functions compute in the promoted dtype of their arguments; the FFT forms transform in
float32 (at least) inside and cast the result back, so bfloat16 and float16 work on every path.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from stir_jax.layers import forms
from stir_jax.layers.dtypes import DEFAULT_PRECISION, PrecisionLike, canonical_precision
from stir_jax.layers.dtypes import float32_inside

_DN = ("NHWC", "HWIO", "NHWC")


def _pads(padding, k: int) -> tuple[tuple[int, int], tuple[int, int]]:
  if padding == "VALID":
    return ((0, 0), (0, 0))
  if padding == "SAME":
    return ((k // 2, (k - 1) // 2),) * 2
  if isinstance(padding, int):
    return ((padding, padding),) * 2
  return tuple(tuple(p) for p in padding)


@functools.lru_cache(maxsize=None)
def fft_size(n: int) -> int:
  """The smallest m >= n whose prime factors are all 2, 3, 5 or 7 (fast FFT lengths)."""
  m = n
  while True:
    r = m
    for p in (2, 3, 5, 7):
      while r % p == 0:
        r //= p
    if r == 1:
      return m
    m += 1


@functools.lru_cache(maxsize=None)
def _tap_dft(n: int, taps: int, half: bool) -> np.ndarray:
  """(F, taps) complex64 with F = n // 2 + 1 if half else n: the conjugated DFT of length n
  restricted to the first ``taps`` samples (a correlation kernel zero-padded to n)."""
  rows = np.arange(n // 2 + 1 if half else n)
  mat = np.exp(2j * np.pi * np.outer(rows, np.arange(taps)) / n).astype(np.complex64)
  mat.setflags(write=False)
  return mat


def _kernel_spectrum(kernel: jax.Array, sizes: tuple[int, ...]) -> jax.Array:
  """``conj(rfftn(kernel, s=sizes))`` over the leading ``len(sizes)`` axes of ``kernel``.

  One small matmul over the taps per axis (the last one a half spectrum). XLA's FFT of the
  zero-padded kernel bank would cost as much as transforming the output, and so would the inverse
  FFT that its gradient needs; these matmuls and their transposes are a few GEMMs over the taps.
  """
  spec = kernel.astype(jnp.complex64)
  last = len(sizes) - 1
  for ax in range(last, -1, -1):
    mat = jnp.asarray(_tap_dft(sizes[ax], kernel.shape[ax], ax == last))
    spec = jnp.moveaxis(jnp.tensordot(mat, spec, axes=([1], [ax]),
                                      precision=jax.lax.Precision.HIGHEST), 0, ax)
  return spec


def conv2d_fft(x: jax.Array, kernel: jax.Array, padding="VALID",
               feature_group_count: int = 1) -> jax.Array:
  """Cross-correlation via real FFTs, exact up to float rounding.

  x: (B, H, W, Cin); kernel: (kh, kw, Cin // G, Cout) with G = feature_group_count (output channel
  block g reads input channel block g, as in XLA) -> (B, H', W', Cout), XLA's output size after the
  zero padding. The correlation is computed circularly at a fast FFT length of at least the padded
  input size; no output that is kept reads past the padded edge, so none of them wraps around.
  Runs in float32 (at least) inside, products at full float32 precision; the result has the
  promoted dtype of x and kernel.
  """
  out_dtype = jnp.result_type(x, kernel)
  x, kernel = x.astype(float32_inside(out_dtype)), kernel.astype(float32_inside(out_dtype))
  kh, kw, cin_g, cout = kernel.shape
  groups = feature_group_count
  if x.shape[3] != cin_g * groups or cout % groups:
    raise ValueError(f"kernel {kernel.shape} with {groups} groups does not fit input {x.shape}")
  (pt, pb), (pl, pr) = _pads(padding, kh)
  if pt or pb or pl or pr:
    x = jnp.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)))
  b, n, m, _ = x.shape
  fn, fm = fft_size(n), fft_size(m)
  fx = jnp.fft.rfft2(x, s=(fn, fm), axes=(1, 2))                         # (B, fn, fm//2+1, Cin)
  fk = _kernel_spectrum(kernel, (fn, fm))                                # (fn, fm//2+1, Ci/G, Co)
  if groups == 1:
    fy = jnp.einsum("buvi,uvio->buvo", fx, fk, precision=jax.lax.Precision.HIGHEST)
  else:
    v = fx.shape[2]
    fx = fx.reshape(b, fn, v, groups, cin_g)
    fk = fk.reshape(fn, v, cin_g, groups, cout // groups)
    fy = jnp.einsum("buvgi,uvigo->buvgo", fx, fk, precision=jax.lax.Precision.HIGHEST)
    fy = fy.reshape(b, fn, v, cout)
  y = jnp.fft.irfft2(fy, s=(fn, fm), axes=(1, 2))
  return y[:, : n - kh + 1, : m - kw + 1, :].astype(out_dtype)


def conv_family(feature_group_count: int = 1, kernel_size: tuple[int, int] | None = None,
                input_size: tuple[int, int] | None = None) -> str:
  """The `forms.FORM_TABLE` family of a 2-D convolution: "grouped" (feature_group_count > 1),
  "large_kernel" (a kernel larger than the unpadded input in either dimension, sizes given) or
  "conv2d"."""
  if feature_group_count > 1:
    return "grouped"
  if (kernel_size is not None and input_size is not None
      and any(k > n for k, n in zip(kernel_size, input_size))):
    return "large_kernel"
  return "conv2d"


def pick_impl(feature_group_count: int = 1, platform: str | None = None,
              kernel_size: tuple[int, int] | None = None,
              input_size: tuple[int, int] | None = None,
              precision: PrecisionLike = DEFAULT_PRECISION) -> str:
  """The `conv2d` form, "direct" or "fft", that "auto" takes on a platform (None: the default
  backend) at a precision: `forms.FORM_TABLE` for the convolution's `conv_family`.

  On CPU: "fft" for grouped convolutions, whose weight gradient XLA:CPU computes several hundred
  times slower than the forward pass, and for kernels larger than the (unpadded) input, which
  XLA:CPU computes 4-30 times slower than the FFT form; "direct" otherwise and on GPU and TPU (see
  the module docstring for the measurements).
  """
  family = conv_family(feature_group_count, kernel_size, input_size)
  return forms.auto_form(family, platform or jax.default_backend(), precision)


def _direct_or_fft(impl: str, x, kernel, padding, feature_group_count, precision):
  if impl == "fft":
    return conv2d_fft(x, kernel, padding, feature_group_count)
  return jax.lax.conv_general_dilated(x, kernel, (1, 1), _pads(padding, kernel.shape[0]),
                                      dimension_numbers=_DN,
                                      feature_group_count=feature_group_count,
                                      precision=canonical_precision(precision))


def conv2d(x: jax.Array, kernel: jax.Array, bias: jax.Array | None = None, padding="VALID",
           impl: str = "auto", feature_group_count: int = 1,
           precision: PrecisionLike = DEFAULT_PRECISION) -> jax.Array:
  """Cross-correlation of x (B, H, W, Cin) with kernel (kh, kw, Cin // G, Cout), stride 1, + bias.

  padding: "VALID", "SAME", an int (on every side) or ((top, bottom), (left, right)).
  feature_group_count: G, as in XLA (output block g reads input block g).
  impl: "direct" (lax.conv_general_dilated), "fft" (conv2d_fft) or "auto" (per lowering platform
    and precision from `stir_jax.layers.forms.FORM_TABLE`, see `pick_impl`); "xla" is a
    deprecated alias of "direct".
  precision: of the direct form's convolution (default "highest": float32 products on CPU and
    GPU, six bfloat16 passes on TPU; "default" lets the backend choose, see docs/precision.md).
    The FFT form always computes in float32 with HIGHEST matmuls (not float32-exact on TPU, whose
    FFT ignores precision: "auto" never takes it there).
  Computes in the promoted dtype of x, kernel and bias, and returns it.
  Equivariant to integer translations (exactly, away from borders).

  >>> conv2d(jnp.zeros((2, 64, 64, 1)), jnp.zeros((7, 7, 1, 16)), jnp.zeros(16)).shape
  (2, 58, 58, 16)
  """
  dt = jnp.result_type(x, kernel, *(() if bias is None else (bias,)))
  x, kernel = x.astype(dt), kernel.astype(dt)
  family = conv_family(feature_group_count, kernel.shape[:2], x.shape[1:3])
  choices = forms.forms_by_platform(impl, family, precision)
  run = lambda form, x, kernel: _direct_or_fft(form, x, kernel, padding, feature_group_count,
                                               precision)
  y = forms.by_platform(run, choices, x, kernel)
  return y if bias is None else y + bias.astype(dt)


def conv3d(x: jax.Array, kernel: jax.Array, bias: jax.Array | None = None,
           impl: str = "auto", precision: PrecisionLike = DEFAULT_PRECISION) -> jax.Array:
  """Valid 3-D cross-correlation: x (B, D, H, W, Cin), kernel (kd, kh, kw, Cin, Cout) ->
  (B, D-kd+1, H-kh+1, W-kw+1, Cout), plus bias.

  impl: "direct" (XLA's convolution), "fft" (circular correlation at a fast FFT length of at least
  the input size, exact on the valid region; float32 inside) or "auto" (`forms.FORM_TABLE`'s
  "conv3d" family: fft when lowered for CPU, where XLA's 3-D convolution is far slower, direct on
  GPU and TPU); "xla" is a deprecated alias of "direct".
  precision: of the direct form's convolution (see `conv2d`).
  """
  dt = jnp.result_type(x, kernel, *(() if bias is None else (bias,)))
  x, kernel = x.astype(dt), kernel.astype(dt)
  choices = forms.forms_by_platform(impl, "conv3d", precision)

  def run(form, x, kernel):
    if form == "direct":
      return jax.lax.conv_general_dilated(x, kernel, (1, 1, 1), "VALID",
                                          dimension_numbers=("NDHWC", "DHWIO", "NDHWC"),
                                          precision=canonical_precision(precision))
    inner = float32_inside(dt)
    d, n, m = x.shape[1:4]
    kd, kh, kw = kernel.shape[:3]
    sizes = tuple(fft_size(z) for z in (d, n, m))
    fx = jnp.fft.rfftn(x.astype(inner), s=sizes, axes=(1, 2, 3))
    fk = _kernel_spectrum(kernel.astype(inner), sizes)
    fy = jnp.einsum("bduvi,duvio->bduvo", fx, fk, precision=jax.lax.Precision.HIGHEST)
    y = jnp.fft.irfftn(fy, s=sizes, axes=(1, 2, 3))[:, : d - kd + 1, : n - kh + 1, : m - kw + 1]
    return y.astype(dt)

  y = forms.by_platform(run, choices, x, kernel)
  return y if bias is None else y + bias.astype(dt)


def conv3d_relu_max(x: jax.Array, kernel: jax.Array, bias: jax.Array,
                    impl: str = "auto", precision: PrecisionLike = DEFAULT_PRECISION) -> jax.Array:
  """The global max over (depth, height, width) of ReLU(conv3d(x, kernel, bias)): (B, D, H, W,
  Cin) -> (B, Cout), the head of the paper's conv3d model, with a sparse backward pass.

  The value is that of ``jnp.max(relu(conv3d(...)), axis=(1, 2, 3))``. The gradient flows through
  one position per example and output channel: the first maximal one in row-major (depth, height,
  width) order, where PyTorch's max_pool3d over the whole volume (the authors' GlobalMaxPool)
  sends it too; ``jnp.max`` would split it among tied positions, which differs only where several
  positions hold exactly the same positive maximum. A channel whose maximum is 0 (its ReLU is off
  everywhere) gets none, as under autodiff. So the backward pass gathers and scatters B x Cout
  kernel-sized patches instead of running the two transposed 3-D convolutions of autodiff (on CPU
  two FFT round trips over the whole volume, more than the forward pass costs).

  impl, precision: of the forward 3-D convolution (see `conv3d`).
  """
  dt = jnp.result_type(x, kernel, bias)
  return _relu_max(x.astype(dt), kernel.astype(dt), bias.astype(dt), impl, precision)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4))
def _relu_max(x, kernel, bias, impl, precision):
  return _relu_max_fwd(x, kernel, bias, impl, precision)[0]


def _relu_max_fwd(x, kernel, bias, impl, precision):
  y = jax.nn.relu(conv3d(x, kernel, bias, impl=impl, precision=precision))
  flat = y.reshape(y.shape[0], -1, y.shape[-1])
  first = jnp.argmax(flat, axis=1)                                   # (B, Cout), first maximum
  top = jnp.take_along_axis(flat, first[:, None, :], axis=1)[:, 0]   # = the max itself
  return top, (x, kernel, first, top)


def _relu_max_bwd(impl, precision, res, g):
  del impl, precision
  x, kernel, first, top = res
  kd, kh, kw, cin, _ = kernel.shape
  b, d, h, w, _ = x.shape
  g = jnp.where(top > 0, g, 0).astype(x.dtype)  # ReLU's derivative at the maximum (0 at 0)
  # the maximum's window: its corner in x, per example and output channel
  pd, ph, pw = jnp.unravel_index(first, (d - kd + 1, h - kh + 1, w - kw + 1))

  def window(xb, i, j, k):
    return jax.lax.dynamic_slice(xb, (i, j, k, 0), (kd, kh, kw, cin))

  per_channel = jax.vmap(window, in_axes=(None, 0, 0, 0))              # over Cout
  patches = jax.vmap(per_channel)(x, pd, ph, pw)                        # (B, Cout, kd, kh, kw, Cin)
  d_kernel = jnp.einsum("bo,bodhwi->dhwio", g, patches,
                        precision=jax.lax.Precision.HIGHEST)
  # x's gradient: g times the output channel's kernel, added at each maximum's window
  taps = lambda p, n: p[:, :, None] + jnp.arange(n)                     # (B, Cout, n)
  bi = jnp.arange(b)[:, None, None, None, None]
  di = taps(pd, kd)[:, :, :, None, None]
  hi = taps(ph, kh)[:, :, None, :, None]
  wi = taps(pw, kw)[:, :, None, None, :]
  updates = g[:, :, None, None, None, None] * jnp.moveaxis(kernel, -1, 0)[None]
  d_x = jnp.zeros_like(x).at[bi, di, hi, wi].add(updates)
  return d_x, d_kernel, jnp.sum(g, axis=0)


_relu_max.defvjp(_relu_max_fwd, _relu_max_bwd)
