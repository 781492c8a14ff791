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
* ``fft``: an exact FFT form for square inputs (one input spectrum shared by all scales, each
  scale's kernel spectrum ``G_i W H_i^T`` from constant matrices, a per-frequency contraction over
  input channels and a cropped inverse DFT); see `stir_jax.layers.siconv_fft`.

``siconv2d_pool`` fuses the scale pooling into the FFT form (pixel, slice and energy pooling) so
that the (B, S, H, W, C) stack is never built.

``impl="auto"`` takes, for square inputs, the form of the "siconv" rows of
`stir_jax.layers.forms.FORM_TABLE` for the platform the program is lowered for and its precision
(`jax.lax.platform_dependent`); non-square inputs have only the direct form. The rows:
CPU: the FFT form at every precision (measured: several times faster, `python -m stir_jax.bench
siconv`). TPU: the direct form at every precision (XLA's TPU FFT ignores precision, jax issue
9881, so the FFT form would not keep "highest"; its convolutions run on the MXU). GPU (reasoned, not
measured on a device, from XLA's cost and memory analysis of both forms compiled for CPU: SiConv2d +
fused pixel pool, forward and backward, batch 16): layer 1 (64x64, 1->16, 29 scales) 10.9 GFLOP for
the FFT form against 29.8 GFLOP direct, layer 2 (58x58, 16->32, 26 scales) 26.8 against 581 GFLOP;
the FFT form moves more memory (layer 2: 8.6 against 3.2 GB accessed) and runs more kernels (about
730 against 430-480 top-level operations). At "highest" (true float32 products, no tensor cores) a
22x FLOP gap outweighs both: FFT. At "high" and "default" the direct form's convolutions run on
TF32 tensor cores, about 8x the float32 rate, and the FFT form's extra memory traffic decides:
direct. docs/precision.md has the whole table.

Dtypes: the functions compute in the promoted dtype of x, weight and bias (the FFT forms in float32
inside, cast back); ``precision`` reaches the direct path's kernel resizing and convolutions (see
`stir_jax.layers.dtypes`) and the choice of "auto".

``interpolation`` names the kernel interpolation mode everywhere (``mode=`` is its deprecated
alias).
"""
from __future__ import annotations

import functools
import warnings
from typing import Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from stir_jax.layers import forms
from stir_jax.layers.dtypes import DEFAULT_PRECISION, Dtype, PrecisionLike, canonical_precision
from stir_jax.layers.dtypes import promote_dtype
from stir_jax.layers.initializers import torch_uniform
from stir_jax.layers.interpolation import MODES, resize_kernel
from stir_jax.layers.scale_pool import scale_pool
from stir_jax.layers.siconv_fft import POOLS as POOL_MODES_FUSED
from stir_jax.layers.siconv_fft import siconv2d_fft, siconv2d_pool_fft

IMPLS = forms.IMPLS


def num_scales_for(size: int, kernel_size: int) -> int:
  """Number of scales so that the largest kernel ``k + 2(S-1)`` still fits ``size``."""
  return (size - kernel_size) // 2 + 1


def interpolation_arg(interpolation: Optional[str], mode: Optional[str],
                      default: str = "bicubic") -> str:
  """The interpolation mode from ``interpolation`` or its deprecated alias ``mode``
  (DeprecationWarning); both given and different is a ValueError."""
  if mode is not None:
    warnings.warn("mode= is deprecated; use interpolation=", DeprecationWarning, stacklevel=3)
    if interpolation is not None and interpolation != mode:
      raise ValueError(f"interpolation={interpolation!r} and its deprecated alias mode={mode!r} "
                       "disagree; give interpolation only")
    interpolation = mode
  interpolation = default if interpolation is None else interpolation
  if interpolation not in MODES:
    raise ValueError(f"unknown interpolation {interpolation!r}; valid: {', '.join(MODES)}")
  return interpolation


def _check_args(x: jax.Array, weight: jax.Array, bias: jax.Array, num_scales: int) -> None:
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


def _siconv_direct(x: jax.Array, weight: jax.Array, bias: jax.Array, num_scales: int, mode: str,
                   precision) -> jax.Array:
  outs = []
  for i in range(num_scales):
    kern = resize_kernel(weight, weight.shape[0] + 2 * i, mode, precision)
    y = jax.lax.conv_general_dilated(
        x, kern, window_strides=(1, 1), padding="VALID",
        dimension_numbers=("NHWC", "HWIO", "NHWC"), precision=canonical_precision(precision))
    y = y + bias
    outs.append(jnp.pad(y, ((0, 0), (i, i), (i, i), (0, 0))))
  return jnp.stack(outs, axis=1)


def _forms(x: jax.Array, impl: str, precision, platform: Optional[str]) -> dict[str, str]:
  """{lowering platform: "fft" | "direct"} for an input (B, H, W, C): "auto" follows
  `forms.FORM_TABLE` on square inputs and is direct otherwise; an explicit "fft" on a non-square
  input is a ValueError. A known platform (an eager call's) gets one entry: nothing else is
  traced."""
  square = x.shape[1] == x.shape[2]
  if impl == "fft" and not square:
    raise ValueError(f"impl='fft' needs a square input, got {x.shape[1]}x{x.shape[2]}; "
                     "use impl='direct' or 'auto'")
  if not square:
    impl = "direct"
  choices = forms.forms_by_platform(impl, "siconv", precision)
  if platform is not None and platform in choices:
    return {platform: choices[platform]}
  return choices


def _eager_platform(*arrays) -> Optional[str]:
  """None for a traced call (an argument is a tracer: jit, grad, vmap or export around it), else
  the platform an eager call runs on: that of the first jax.Array argument's device, or the
  default backend."""
  if any(isinstance(a, jax.core.Tracer) for a in arrays):
    return None
  for a in arrays:
    if isinstance(a, jax.Array):
      return next(iter(a.devices())).platform
  return jax.default_backend()


# The public functions check their arguments, then call these jitted cores (options static): an
# eager call, such as an eager ``model.init``, compiles each layer once instead of dispatching its
# hundreds of per-scale operations one by one, traces only the form of the platform it runs on
# (`platform`), and takes the FFT form's scan over scales, which compiles several times faster
# than the unrolled loop that traced calls get. Under an outer jit the cores are inlined as any
# nested jit, with every platform's form (`jax.lax.platform_dependent`).
_STATIC = ("num_scales", "interpolation", "impl", "precision", "platform")


@functools.partial(jax.jit, static_argnames=_STATIC)
def _siconv2d(x, weight, bias, *, num_scales, interpolation, impl, precision, platform):
  x, weight, bias = promote_dtype(x, weight, bias)
  eager = platform is not None

  def run(form, x, weight, bias):
    if form == "fft":
      return siconv2d_fft(x, weight, bias, num_scales, interpolation, eager)
    return _siconv_direct(x, weight, bias, num_scales, interpolation, precision)

  return forms.by_platform(run, _forms(x, impl, precision, platform), x, weight, bias)


@functools.partial(jax.jit, static_argnames=_STATIC + ("pool",))
def _siconv2d_pool(x, weight, bias, *, num_scales, interpolation, pool, impl, precision,
                   platform):
  x, weight, bias = promote_dtype(x, weight, bias)
  eager = platform is not None

  def run(form, x, weight, bias):
    if form == "fft":
      return siconv2d_pool_fft(x, weight, bias, num_scales, interpolation, pool, eager)
    return scale_pool(_siconv_direct(x, weight, bias, num_scales, interpolation, precision), pool)

  return forms.by_platform(run, _forms(x, impl, precision, platform), x, weight, bias)


def _static_precision(precision: PrecisionLike):
  """precision as a hashable static argument (a lax.Precision, a pair of them, or None)."""
  return canonical_precision(precision)


def siconv2d(x: jax.Array, weight: jax.Array, bias: jax.Array, *, num_scales: int,
             interpolation: Optional[str] = None, impl: str = "auto",
             precision: PrecisionLike = DEFAULT_PRECISION,
             mode: Optional[str] = None) -> jax.Array:
  """Scale-invariant convolution: the kernel at every size ``k + 2i``, valid, then zero-padded.

  Equivariant to translations exactly (on the valid region) and to rescaling only approximately
  (kernels are interpolated and images resampled).

  Args:
    x: input (B, H, W, Cin).
    weight: base kernels (k, k, Cin, Cout), HWIO.
    bias: (Cout,), added to every scale before the zero padding.
    num_scales: S; must equal ``num_scales_for(min(H, W), k)``.
    interpolation: kernel interpolation mode, one of ``interpolation.MODES`` (default "bicubic").
    impl: ``"direct"`` (one conv per scale), ``"fft"`` (exact FFT form, square inputs only) or
      ``"auto"`` (per lowering platform and precision from `forms.FORM_TABLE` on square inputs,
      direct otherwise: see the module docstring); "xla" is a deprecated alias of "direct".
    precision: of the direct path's kernel resizing and convolutions (default "highest": float32
      products on CPU and GPU, six bfloat16 passes on TPU; "default" lets the backend choose). The
      FFT path transforms in float32 with HIGHEST matmuls whatever ``precision`` says (float32-exact
      on CPU and GPU; on TPU the FFT ignores precision, so "auto" never takes it there).
    mode: deprecated alias of ``interpolation``.

  Returns:
    (B, S, H-k+1, W-k+1, Cout) in the promoted dtype of x, weight and bias. Scale i holds the
    valid response to the kernel of size k + 2i plus bias in ``[i, H-k+1-i) x [i, W-k+1-i)`` and
    exactly 0 on the ring outside it.

  Raises:
    ValueError: wrong ``num_scales`` for the input size, unknown interpolation/impl, bad shapes, or
      a non-square input with ``impl="fft"``.
  """
  interpolation = interpolation_arg(interpolation, mode)
  impl = forms.check_impl(impl)
  _check_args(x, weight, bias, num_scales)
  return _siconv2d(x, weight, bias, num_scales=num_scales, interpolation=interpolation, impl=impl,
                   precision=_static_precision(precision),
                   platform=_eager_platform(x, weight, bias))


def siconv2d_pool(x: jax.Array, weight: jax.Array, bias: jax.Array, *, num_scales: int,
                  interpolation: Optional[str] = None, pool: str = "pixel", impl: str = "auto",
                  precision: PrecisionLike = DEFAULT_PRECISION,
                  mode: Optional[str] = None) -> tuple[jax.Array, jax.Array]:
  """``scale_pool(siconv2d(x, ...), pool)`` without materialising the (B, S, H, W, C) output.

  The FFT path is `siconv_fft.siconv2d_pool_fft`: scale by scale, keeping a running maximum per
  pixel (pixel) or a running choice of one scale per (batch, channel) (slice: largest value,
  energy: largest sum), the zero ring of every scale included and ties going to the lowest scale
  as ``jnp.argmax``; a custom VJP routes the pooled gradient to the chosen scale. Outputs, indices
  and gradients equal those of ``scale_pool(siconv2d(...), pool)`` (to float rounding).

  Args:
    x, weight, bias, num_scales, interpolation, impl, precision, mode: as for ``siconv2d``.
    pool: ``"pixel"``, ``"slice"`` or ``"energy"`` (``POOL_MODES_FUSED``); the soft pool needs the
      whole stack, use ``scale_pool(siconv2d(...), "soft")``.

  Returns:
    ``(pooled, indices)``: pooled (B, H-k+1, W-k+1, Cout); int32 scale indices, (B, H-k+1, W-k+1,
    Cout) for pixel and (B, Cout) for slice and energy.

  Raises:
    ValueError: as ``siconv2d``, or a pool mode that is not fused.
  """
  if pool not in POOL_MODES_FUSED:
    raise ValueError(f"siconv2d_pool fuses only {POOL_MODES_FUSED}, not {pool!r}; use "
                     "scale_pool(siconv2d(...), pool)")
  interpolation = interpolation_arg(interpolation, mode)
  impl = forms.check_impl(impl)
  _check_args(x, weight, bias, num_scales)
  return _siconv2d_pool(x, weight, bias, num_scales=num_scales, interpolation=interpolation,
                        pool=pool, impl=impl, precision=_static_precision(precision),
                        platform=_eager_platform(x, weight, bias))


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
    interpolation: kernel interpolation mode (``interpolation.MODES``; default "bicubic").
    impl: ``"auto"``, ``"direct"`` or ``"fft"`` (see ``siconv2d``).
    pool: None, or one of ``POOL_MODES_FUSED`` to return ``siconv2d_pool``'s (pooled, indices)
      instead of the stack of scales (same parameters, much less memory and time).
    dtype: computation dtype (None: promoted from input and parameters, as flax.linen.Conv).
    param_dtype: dtype of the kernel and bias (float32).
    precision: of the kernel resizing and convolutions (see `siconv2d`; default "highest").
    mode: deprecated alias of ``interpolation``.

  >>> layer = SiConv2d(16, dtype=jnp.bfloat16)
  >>> variables = layer.init(jax.random.PRNGKey(0), jnp.zeros((1, 64, 64, 1)))  # float32 params
  >>> layer.apply(variables, jnp.zeros((1, 64, 64, 1))).dtype
  dtype(bfloat16)
  """
  features: int
  kernel_size: int = 7
  num_scales: Optional[int] = None
  interpolation: Optional[str] = None
  impl: str = "auto"
  pool: Optional[str] = None
  dtype: Optional[Dtype] = None
  param_dtype: Dtype = jnp.float32
  precision: PrecisionLike = DEFAULT_PRECISION
  mode: Optional[str] = None

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    interpolation = interpolation_arg(self.interpolation, self.mode)
    cin = x.shape[-1]
    k = self.kernel_size
    init = torch_uniform(cin * k * k)
    kernel = self.param("kernel", init, (k, k, cin, self.features), self.param_dtype)
    bias = self.param("bias", init, (self.features,), self.param_dtype)
    x, kernel, bias = promote_dtype(x, kernel, bias, dtype=self.dtype)
    num_scales = self.num_scales
    if num_scales is None:
      num_scales = num_scales_for(min(x.shape[1], x.shape[2]), k)
    if self.pool is not None:
      return siconv2d_pool(x, kernel, bias, num_scales=num_scales, interpolation=interpolation,
                           pool=self.pool, impl=self.impl, precision=self.precision)
    return siconv2d(x, kernel, bias, num_scales=num_scales, interpolation=interpolation,
                    impl=self.impl, precision=self.precision)
