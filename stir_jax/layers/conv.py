"""Plain 2-D cross-correlation with a choice of algorithm: XLA's convolution or an exact FFT form.

On CPU, XLA's convolutions (and above all their weight gradients) run far below the machine's
speed for the 7x7, 16->32 channel layers of the STIR models, while the same correlation computed
with real FFTs needs about a twentieth of the FLOPs. Both forms compute the same function;
`impl="auto"` picks the FFT form on CPU for kernels of 5x5 and more.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

_DN = ("NHWC", "HWIO", "NHWC")


def _pads(padding, k: int) -> tuple[tuple[int, int], tuple[int, int]]:
  if padding == "VALID":
    return ((0, 0), (0, 0))
  if padding == "SAME":
    return ((k // 2, (k - 1) // 2),) * 2
  if isinstance(padding, int):
    return ((padding, padding),) * 2
  return tuple(tuple(p) for p in padding)


def conv2d_fft(x: jax.Array, kernel: jax.Array, padding="VALID") -> jax.Array:
  """Cross-correlation via real FFTs, exact up to float rounding.

  x: (B, H, W, Cin); kernel: (k, k, Cin, Cout) -> (B, H', W', Cout) with XLA's 'VALID' output size
  after zero padding. Circular correlation at the (padded) input size equals the valid correlation
  on the valid region, since no valid output reads past the edge; the rest is cropped.
  """
  kh, kw = kernel.shape[:2]
  (pt, pb), (pl, pr) = _pads(padding, kh)
  if pt or pb or pl or pr:
    x = jnp.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)))
  n, m = x.shape[1], x.shape[2]
  fx = jnp.fft.rfft2(x, axes=(1, 2))                                     # (B, n, m//2+1, Cin)
  fk = jnp.fft.rfft2(kernel, s=(n, m), axes=(0, 1))                      # (n, m//2+1, Cin, Cout)
  fy = jnp.einsum("buvi,uvio->buvo", fx, jnp.conj(fk),
                  precision=jax.lax.Precision.HIGHEST)
  y = jnp.fft.irfft2(fy, s=(n, m), axes=(1, 2))
  return y[:, : n - kh + 1, : m - kw + 1, :]


def conv2d(x: jax.Array, kernel: jax.Array, bias: jax.Array | None = None, padding="VALID",
           impl: str = "auto") -> jax.Array:
  """Cross-correlation of x (B, H, W, Cin) with kernel (kh, kw, Cin, Cout), stride 1, plus bias.

  padding: "VALID", "SAME", an int (on every side) or ((top, bottom), (left, right)).
  impl: "xla" (lax.conv_general_dilated), "fft" (conv2d_fft) or "auto" (fft on CPU for kernels of
  5x5 and larger, xla elsewhere). Equivariant to integer translations (exactly, away from borders).
  """
  if impl == "auto":
    impl = "fft" if (jax.default_backend() == "cpu" and min(kernel.shape[:2]) >= 5) else "xla"
  if impl == "fft":
    y = conv2d_fft(x, kernel, padding)
  elif impl == "xla":
    y = jax.lax.conv_general_dilated(x, kernel, (1, 1), _pads(padding, kernel.shape[0]),
                                     dimension_numbers=_DN)
  else:
    raise ValueError(f"unknown conv impl {impl!r}; valid: auto, xla, fft")
  return y if bias is None else y + bias


def conv3d(x: jax.Array, kernel: jax.Array, bias: jax.Array | None = None,
           impl: str = "auto") -> jax.Array:
  """Valid 3-D cross-correlation: x (B, D, H, W, Cin), kernel (kd, kh, kw, Cin, Cout) ->
  (B, D-kd+1, H-kh+1, W-kw+1, Cout), plus bias.

  impl: "xla", "fft" (circular correlation at the input size, exact on the valid region) or
  "auto" (fft on CPU, where XLA's 3-D convolution is far slower, xla elsewhere).
  """
  if impl == "auto":
    impl = "fft" if jax.default_backend() == "cpu" else "xla"
  if impl == "xla":
    y = jax.lax.conv_general_dilated(x, kernel, (1, 1, 1), "VALID",
                                     dimension_numbers=("NDHWC", "DHWIO", "NDHWC"))
  elif impl == "fft":
    d, n, m = x.shape[1:4]
    kd, kh, kw = kernel.shape[:3]
    fx = jnp.fft.rfftn(x, axes=(1, 2, 3))
    fk = jnp.fft.rfftn(kernel, s=(d, n, m), axes=(0, 1, 2))
    fy = jnp.einsum("bduvi,duvio->bduvo", fx, jnp.conj(fk), precision=jax.lax.Precision.HIGHEST)
    y = jnp.fft.irfftn(fy, s=(d, n, m), axes=(1, 2, 3))[:, : d - kd + 1, : n - kh + 1, : m - kw + 1]
  else:
    raise ValueError(f"unknown conv impl {impl!r}; valid: auto, xla, fft")
  return y if bias is None else y + bias
