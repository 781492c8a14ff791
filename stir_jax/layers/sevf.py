"""SEVF: scale-equivariant vector fields (Marcos, Kellenberger, Lobry & Tuia, "Scale equivariance in
CNNs with vector fields", ICML/FAIM workshop 2018, arXiv 1807.11783).

A scale convolution resizes its input by each factor ``s_i = base**i``, correlates it with one
shared kernel, resizes the result back, and keeps, per pixel and channel, the largest response and
*which* scale gave it. The output is a vector field: magnitude ``ReLU(max)``, angle
``theta_i = i * angle_range / (n - 1)`` of the winning scale, ``i = -(n_small - 1) .. n_big``,
``n = n_small + n_big``:

  ``u = ReLU(max_i r_i) cos(theta_argmax)``,  ``v = ReLU(max_i r_i) sin(theta_argmax)``.

* `sevf_scalar_conv2d` (scalar -> vector field): ``r_i = branch_i(x, W)``.
* `sevf_vector_conv2d` (vector -> vector field): the kernel pair ``(W_u, W_v)`` is rotated by each
  scale's angle, ``W_u' = W_u cos(theta_i) + W_v sin(theta_i)``, ``W_v' = -W_u sin(theta_i) +
  W_v cos(theta_i)``, and ``r_i = branch_i(u, W_u') + branch_i(v, W_v')``.

One branch, exactly as the reference (square ``H x H`` inputs; every resize is PyTorch bilinear
with ``align_corners=False``, no antialiasing: source ``(o + 1/2) in / out - 1/2`` clamped at 0,
upper neighbour clamped to the edge, `stir_jax.layers.interpolation.interpolation_matrix`):

1. resize to ``round(H s) x round(H s)`` with **Python's round (halves to even)**;
2. correlate with zero padding ``p``;
3. resize to the plain convolution's output size ``H + 2p - k + 1``.

``jax.image.resize`` does not reproduce these rules (it antialiases when downscaling and does not
clamp the source coordinate), so each branch is two fixed separable matrices (the zero padding is
folded into the first) around one valid convolution. Branches whose rounded sizes coincide are
computed once (scalar layer); ties in the maximum go to the first scale, as PyTorch's ``max``.

Also here: `vector_magnitude`, `vector_max_pool` (`VectorMaxPool`) and `VectorBatchNorm`, the
reference's vector-field pooling and normalisation.

Scale behaviour: rescaling the input by ``base`` approximately shifts the winning scale index by
one, so the magnitude is approximately scale-invariant and the angle approximately rotates by
``angle_range / (n - 1)`` (equivariant as a vector field) within the covered factors; only
approximately (bilinear resampling, the rounded sizes, the finite factor set). Equivariant to
translations only up to the resampling.

Reference: ISosnovik/sesn (commit deaa16c), ``models/impl/se_vector_fields.py``:
``ScaleConvScalar``, ``ScaleConvVector``, ``conv_scale``, ``VectorMaxPool``, ``VectorBatchNorm``,
``vector2scalar`` (Sosnovik's faster reimplementation of github.com/dmarcosg/ScaleEqNet).

>>> scales, angles = sevf_scales()                       # 0.397 .. 2.0, -1.20 .. 0.90 rad
>>> u, v = sevf_scalar_conv2d(jnp.zeros((2, 20, 20, 2)), jnp.zeros((5, 5, 2, 3)), scales,
...                           angles, padding=2)
>>> u.shape
(2, 20, 20, 3)
"""
from __future__ import annotations

import functools
import math
from typing import Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from stir_jax.layers.conv import conv2d
from stir_jax.layers.dtypes import DEFAULT_PRECISION, Dtype, PrecisionLike, float32_inside
from stir_jax.layers.dtypes import promote_dtype
from stir_jax.layers.initializers import torch_uniform
from stir_jax.layers.interpolation import interpolation_matrix
from stir_jax.layers.resample import apply_separable, center_pad_crop_matrix
from stir_jax.layers.scale_pool import scale_pool

# The reference's defaults (and its MNIST models').
N_SCALES_SMALL = 5
N_SCALES_BIG = 3
BASE = 1.26
ANGLE_RANGE = 2 * np.pi / 3


def sevf_scales(n_scales_small: int = N_SCALES_SMALL, n_scales_big: int = N_SCALES_BIG,
                base: float = BASE, angle_range: float = ANGLE_RANGE
                ) -> tuple[np.ndarray, np.ndarray]:
  """The scale factors ``base**i`` and angles ``i * angle_range / (n - 1)`` for
  ``i = -(n_scales_small - 1) .. n_scales_big`` (float64, ``n = n_scales_small + n_scales_big``)."""
  n = n_scales_small + n_scales_big
  exponents = np.linspace(-n_scales_small + 1, n_scales_big, n)
  return base**exponents, exponents * angle_range / (n - 1)


def branch_size(size: int, scale: float) -> int:
  """The resized side ``round(size * scale)``, Python's round (halves to even), as the reference."""
  return int(round(float(size) * float(scale)))


@functools.lru_cache(maxsize=None)
def branch_operators(size: int, kernel_size: int, padding: int, scale: float
                     ) -> tuple[np.ndarray, np.ndarray]:
  """The two per-axis matrices of one branch (module docstring), float64, read-only.

  Returns:
    ``(inp, back)``: ``inp`` (m + 2 padding, size) resizes to ``m = round(size * scale)`` and zero
    pads; ``back`` (size + 2 padding - k + 1, m + 2 padding - k + 1) resizes the valid correlation
    of the padded input back to the plain convolution's output size.
  """
  m = branch_size(size, scale)
  inner = m + 2 * padding - kernel_size + 1
  out = size + 2 * padding - kernel_size + 1
  if m < 1 or inner < 1 or out < 1:
    raise ValueError(f"SEVF branch at scale {scale:.4g} of a {size}x{size} input leaves no output "
                     f"(resized to {m}, kernel {kernel_size}, padding {padding})")
  inp = center_pad_crop_matrix(m, m + 2 * padding) @ interpolation_matrix(size, m, "bilinear")
  back = np.array(interpolation_matrix(inner, out, "bilinear"))
  inp.setflags(write=False)
  back.setflags(write=False)
  return inp, back


def _branch(x: jax.Array, kernel: jax.Array, scale: float, padding: int, impl: str,
            precision: PrecisionLike) -> jax.Array:
  """One branch: resize (+ zero pad), valid correlation, resize back. x square (B, H, H, C)."""
  inp, back = branch_operators(x.shape[1], kernel.shape[0], padding, float(scale))
  y = conv2d(apply_separable(x, inp, inp, precision=precision), kernel, impl=impl,
             precision=precision)
  return apply_separable(y, back, back, precision=precision)


def _check_square(x: jax.Array) -> None:
  if x.ndim != 4 or x.shape[1] != x.shape[2]:
    raise ValueError(f"SEVF layers need square (B, H, H, C) inputs, got shape {x.shape}")


def _vector_output(stacked: jax.Array, angles: Sequence[float]):
  """(B, S, H, W, O) responses -> (u, v, indices): ReLU of the first maximum, oriented by the
  winning scale's angle."""
  vals, indices = scale_pool(stacked, "pixel")
  magnitude = jax.nn.relu(vals)
  angles = np.asarray(angles, np.float64)
  cos = jnp.asarray(np.cos(angles), vals.dtype)[indices]
  sin = jnp.asarray(np.sin(angles), vals.dtype)[indices]
  return magnitude * cos, magnitude * sin, indices


def sevf_scalar_conv2d(x: jax.Array, kernel: jax.Array, scales: Sequence[float],
                       angles: Sequence[float], padding: int = 0, impl: str = "auto",
                       precision: PrecisionLike = DEFAULT_PRECISION,
                       return_indices: bool = False):
  """``ScaleConvScalar``: scalar field -> vector field (module docstring).

  Args:
    x: ``(batch, H, H, in)``, square.
    kernel: ``(k, k, in, out)`` HWIO.
    scales, angles: one factor and one angle per branch (`sevf_scales`).
    padding: zero padding of each branch's correlation.
    impl: convolution algorithm, see `stir_jax.layers.conv.conv2d`.
    precision: of the resizes and the convolutions.
    return_indices: also return the index of the winning scale.

  Returns:
    ``(u, v)``, each ``(batch, H + 2 padding - k + 1, same, out)`` in the promoted dtype of x and
    kernel; with return_indices ``(u, v, indices)`` (int32, same shape).
  """
  x, kernel = promote_dtype(x, kernel)
  _check_square(x)
  by_size: dict[int, jax.Array] = {}   # identical rounded sizes give identical branches
  responses = []
  for s in scales:
    m = branch_size(x.shape[1], s)
    if m not in by_size:
      by_size[m] = _branch(x, kernel, s, padding, impl, precision)
    responses.append(by_size[m])
  u, v, indices = _vector_output(jnp.stack(responses, axis=1), angles)
  return (u, v, indices) if return_indices else (u, v)


def rotate_kernels(kernel_u: jax.Array, kernel_v: jax.Array, angle: float
                   ) -> tuple[jax.Array, jax.Array]:
  """The kernel pair rotated by ``angle``: ``(W_u cos + W_v sin, -W_u sin + W_v cos)``."""
  c, s = math.cos(angle), math.sin(angle)
  return kernel_u * c + kernel_v * s, -kernel_u * s + kernel_v * c


def sevf_vector_conv2d(u: jax.Array, v: jax.Array, kernel_u: jax.Array, kernel_v: jax.Array,
                       scales: Sequence[float], angles: Sequence[float], padding: int = 0,
                       impl: str = "auto", precision: PrecisionLike = DEFAULT_PRECISION,
                       return_indices: bool = False):
  """``ScaleConvVector``: vector field -> vector field (module docstring).

  Each branch correlates ``u`` with the rotated ``W_u'`` and ``v`` with ``W_v'`` and adds them; as
  the branch is linear, this is one correlation of ``[u, v]`` (channels concatenated) with
  ``[W_u'; W_v']`` (input channels concatenated).

  Args:
    u, v: ``(batch, H, H, in)`` each, square.
    kernel_u, kernel_v: ``(k, k, in, out)`` HWIO.
    scales, angles: one factor and one angle per branch (`sevf_scales`).
    padding, impl, precision, return_indices: as `sevf_scalar_conv2d`.

  Returns:
    ``(u, v)`` (and the indices with return_indices), as `sevf_scalar_conv2d`.
  """
  u, v, kernel_u, kernel_v = promote_dtype(u, v, kernel_u, kernel_v)
  _check_square(u)
  x = jnp.concatenate([u, v], axis=-1)
  responses = []
  for s, a in zip(scales, angles):
    ku, kv = rotate_kernels(kernel_u, kernel_v, float(a))
    responses.append(_branch(x, jnp.concatenate([ku, kv], axis=2), s, padding, impl, precision))
  out_u, out_v, indices = _vector_output(jnp.stack(responses, axis=1), angles)
  return (out_u, out_v, indices) if return_indices else (out_u, out_v)


def vector_magnitude(u: jax.Array, v: jax.Array) -> jax.Array:
  """``sqrt(u**2 + v**2)`` (the reference's ``vector2scalar``) with a zero gradient at the zero
  vector (where the reference's is NaN/inf; in its models a ReLU before always masks it to 0)."""
  sq = u * u + v * v
  positive = sq > 0
  return jnp.where(positive, jnp.sqrt(jnp.where(positive, sq, 1)), 0).astype(sq.dtype)


def vector_max_pool(u: jax.Array, v: jax.Array, window: int, padding: int = 0
                    ) -> tuple[jax.Array, jax.Array]:
  """``VectorMaxPool``: in each ``window x window`` window (stride ``window``), the (u, v) at the
  largest magnitude (the first in row-major order on ties, as PyTorch's max-pool indices).

  Args:
    u, v: ``(batch, H, W, C)``.
    window: window side and stride.
    padding: implicit padding on every side (never selected), as ``F.max_pool2d``.

  Returns:
    ``(u, v)``, each ``(batch, (H + 2 padding) // window, (W + 2 padding) // window, C)``.
  """
  b, h, w, c = u.shape
  oh, ow = (h + 2 * padding) // window, (w + 2 * padding) // window
  if oh < 1 or ow < 1:
    raise ValueError(f"window {window} with padding {padding} does not fit a {h}x{w} map")
  # The magnitude as the reference computes it (sqrt of u^2 + v^2: the squares alone could order
  # two values that the rounded square roots tie).
  magnitude = jax.lax.stop_gradient(vector_magnitude(u, v))
  pads = ((0, 0), (padding, padding), (padding, padding), (0, 0))

  def windows(a, fill):
    a = jnp.pad(a, pads, constant_values=fill)[:, :oh * window, :ow * window]
    a = a.reshape(b, oh, window, ow, window, c).transpose(0, 1, 3, 2, 4, 5)
    return a.reshape(b, oh, ow, window * window, c)

  idx = jnp.argmax(windows(magnitude, -jnp.inf), axis=3)[:, :, :, None]
  pick = lambda a: jnp.take_along_axis(windows(a, 0), idx, axis=3)[:, :, :, 0]
  return pick(u), pick(v)


class VectorMaxPool(nn.Module):
  """`vector_max_pool` as a module: ``(u, v) -> (u, v)``.

  Attributes:
    window: window side and stride.
    padding: implicit padding on every side.
    dtype: computation dtype (None: u's and v's promoted dtype).
    param_dtype, precision: accepted for the uniform layer signature (no parameters, no matmul).
  """
  window: int
  padding: int = 0
  dtype: Optional[Dtype] = None
  param_dtype: Dtype = jnp.float32
  precision: PrecisionLike = DEFAULT_PRECISION

  def __call__(self, u: jax.Array, v: jax.Array) -> tuple[jax.Array, jax.Array]:
    u, v = promote_dtype(u, v, dtype=self.dtype)
    return vector_max_pool(u, v, self.window, self.padding)


class VectorBatchNorm(nn.Module):
  """The reference's ``VectorBatchNorm``: divides u and v by ``sqrt(eps + var)``, with ``var`` the
  per-channel variance of the magnitude ``sqrt(u**2 + v**2)`` over (batch, H, W).

  Eval (``train=False``): ``var`` is the running variance (``batch_stats/running_var``, (C,),
  initialised to 1). Train: the biased batch variance, and ``running_var <- (1 - momentum)
  running_var + momentum * var * n / (n - 1)`` with ``n = batch * H * W``. No mean is subtracted
  and nothing is learned: the reference's ``weight`` parameter is never read, so it is not created
  (its gradient there is zero).

  Attributes:
    epsilon: added to the variance (1e-5).
    momentum: of the running variance (0.5, the reference's).
    dtype: computation dtype (None: inferred); the variance is computed in float32 at least.
    param_dtype: dtype of the running variance (float32).
    precision: accepted for the uniform layer signature (no matmul).
  """
  epsilon: float = 1e-5
  momentum: float = 0.5
  dtype: Optional[Dtype] = None
  param_dtype: Dtype = jnp.float32
  precision: PrecisionLike = DEFAULT_PRECISION

  @nn.compact
  def __call__(self, u: jax.Array, v: jax.Array, train: bool = False
               ) -> tuple[jax.Array, jax.Array]:
    channels = u.shape[-1]
    running = self.variable("batch_stats", "running_var",
                            lambda: jnp.ones((channels,), self.param_dtype))
    u, v = promote_dtype(u, v, dtype=self.dtype)
    if train:
      acc = float32_inside(u.dtype)
      magnitude = vector_magnitude(u.astype(acc), v.astype(acc))
      var = jnp.var(magnitude, axis=tuple(range(u.ndim - 1)))
      if not self.is_initializing():
        n = magnitude.size / channels
        running.value = ((1 - self.momentum) * running.value
                         + self.momentum * jax.lax.stop_gradient(var) * n / (n - 1)
                         ).astype(self.param_dtype)
    else:
      var = running.value.astype(float32_inside(u.dtype))
    scale = jax.lax.rsqrt(self.epsilon + var).astype(u.dtype)
    return u * scale, v * scale


class SEVFScalarConv(nn.Module):
  """`sevf_scalar_conv2d` as a module: ``(B, H, H, in) -> (u, v)``, each ``(B, H', H',
  features)`` with ``H' = H + 2 padding - kernel_size + 1``.

  Parameter ``kernel`` (k, k, in, features) HWIO, PyTorch's default init (the reference's
  ``weight`` (O, I, k, k) transposed).

  Attributes:
    features: output channels.
    kernel_size: kernel side.
    padding: zero padding of each branch's correlation.
    n_scales_small, n_scales_big, base, angle_range: the branches (`sevf_scales`).
    impl: convolution algorithm, see `stir_jax.layers.conv.conv2d`.
    dtype, param_dtype, precision: as flax.linen.Conv (precision default "highest").
  """
  features: int
  kernel_size: int = 7
  padding: int = 0
  n_scales_small: int = N_SCALES_SMALL
  n_scales_big: int = N_SCALES_BIG
  base: float = BASE
  angle_range: float = ANGLE_RANGE
  impl: str = "auto"
  dtype: Optional[Dtype] = None
  param_dtype: Dtype = jnp.float32
  precision: PrecisionLike = DEFAULT_PRECISION

  def scales_and_angles(self) -> tuple[np.ndarray, np.ndarray]:
    return sevf_scales(self.n_scales_small, self.n_scales_big, self.base, self.angle_range)

  def _kernel(self, name: str, in_features: int) -> jax.Array:
    k = self.kernel_size
    return self.param(name, torch_uniform(in_features * k * k),
                      (k, k, in_features, self.features), self.param_dtype)

  @nn.compact
  def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    kernel = self._kernel("kernel", x.shape[-1])
    x, kernel = promote_dtype(x, kernel, dtype=self.dtype)
    scales, angles = self.scales_and_angles()
    return sevf_scalar_conv2d(x, kernel, scales, angles, self.padding, self.impl, self.precision)


class SEVFVectorConv(SEVFScalarConv):
  """`sevf_vector_conv2d` as a module: ``(u, v) -> (u, v)``; parameters ``kernel_u`` and
  ``kernel_v`` (k, k, in, features) HWIO (the reference's ``weight_u`` / ``weight_v``).

  Attributes: as `SEVFScalarConv`.
  """

  @nn.compact
  def __call__(self, u: jax.Array, v: jax.Array) -> tuple[jax.Array, jax.Array]:
    kernel_u = self._kernel("kernel_u", u.shape[-1])
    kernel_v = self._kernel("kernel_v", u.shape[-1])
    u, v, kernel_u, kernel_v = promote_dtype(u, v, kernel_u, kernel_v, dtype=self.dtype)
    scales, angles = self.scales_and_angles()
    return sevf_vector_conv2d(u, v, kernel_u, kernel_v, scales, angles, self.padding,
                              self.impl, self.precision)
