"""SI-ConvNet layer (Kanazawa et al. 2014): a locally scale-invariant convolution.

The layer rescales its input by each factor of ``scales`` (default ``1.26**e``, ``e = -2 .. 3``;
bilinear with corners aligned, then a centred zero-pad or crop back to the input size), applies one
shared valid convolution (+ bias) to every rescaled copy, rescales each result back by the inverse
factor (again centred pad/crop, to the valid output size) and takes the maximum over the scales.

Scale behaviour: the max over rescaled copies makes the response approximately invariant to local
rescalings by the given factors (0.63x to 2x by default) at the image centre; resampling blur, the
centred crop/pad and the discrete factor set make it only approximate, and translations away from
the centre are not handled consistently across scales. Equivariant to translations only for the
factor 1.

Reference: ``KanazawaConv2d`` of the authors' code (taltstidl/scale-equivariant-cnn,
``siconvnet/contrib/kanazawa.py``), itself adapted from the sesn repository.

The sesn repository's version (ISosnovik/sesn, commit deaa16c, ``models/impl/scale_modules.py``,
``Kanazawa_SIConv2d``; its MNIST-scale model uses it with scales 0.3 .. 3.33 and padding 3) is
this function with ``padding=p`` and its own ``scales``. Compared with the paper's layer:

* padding: the shared convolution zero-pads each *rescaled* copy by ``p`` (the paper's layer is
  valid, ``p = 0``), and each response is rescaled back within its own padded-conv output size
  ``H + 2p - k + 1``;
* everything else is the same: bilinear with ``align_corners=True`` both ways (source
  ``o (in - 1) / (out - 1)``), output size ``floor(n s)`` (``floor(n / s)`` back, ``1 / s`` in
  double precision), centred zero pad or crop with the left/top amount ``(n - m) // 2`` (floor
  division), a factor of exactly 1 untouched, one shared kernel and bias, the element-wise maximum
  over scales, no ReLU (the models add it).

>>> y = kanazawa_conv2d(jnp.zeros((2, 64, 64, 1)), jnp.zeros((7, 7, 1, 16)), jnp.zeros(16))
>>> y.shape
(2, 58, 58, 16)
"""
from __future__ import annotations

import functools
from typing import Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from stir_jax.layers.conv import conv2d
from stir_jax.layers.dtypes import DEFAULT_PRECISION, Dtype, PrecisionLike, promote_dtype
from stir_jax.layers.initializers import torch_uniform
from stir_jax.layers.resample import apply_separable, center_pad_crop_matrix, rescale_matrix

# 1.26**e for e = -2..3, in double precision as the reference computes them.
SCALES = tuple(1.26**e for e in range(-2, 4))


@functools.lru_cache(maxsize=None)
def _window_operators(h: int, w: int, k: int, scale: float, padding: int = 0):
  """Rescale matrices of one Kanazawa scale, restricted to the window its rescale back reads.

  The layer computes ``back @ conv(pad @ rescale @ x)`` per axis, with ``rescale =
  rescale_matrix(n, s)``, ``pad`` the zero padding by ``padding`` and ``back = rescale_matrix(n +
  2 padding - k + 1, 1 / s)``. Where ``back`` has all-zero columns (s < 1: upsampling then a
  centred crop reads only the middle), the convolution outputs they would read are not needed;
  output window ``[j0, j1)`` needs padded input rows ``[j0, j1 + k - 1)``.

  Returns:
    ``(in_h, in_w, back_h, back_w)``: ``in_*`` (window + k - 1, n) and ``back_*``
    (n + 2 padding - k + 1, window), float64 NumPy; the full matrices where every output is read.
  """
  ops = []
  for n in (h, w):
    back = rescale_matrix(n + 2 * padding - k + 1, 1 / scale)
    used = np.flatnonzero(np.any(back != 0, axis=0))
    j0, j1 = int(used[0]), int(used[-1]) + 1
    rescale = center_pad_crop_matrix(n, n + 2 * padding) @ rescale_matrix(n, scale)
    ops.append((rescale[j0:j1 + k - 1], back[:, j0:j1]))
  (in_h, back_h), (in_w, back_w) = ops
  return in_h, in_w, back_h, back_w


def kanazawa_conv2d(x: jax.Array, kernel: jax.Array, bias: jax.Array,
                    scales: Sequence[float] = SCALES, impl: str = "auto",
                    precision: PrecisionLike = DEFAULT_PRECISION, padding: int = 0) -> jax.Array:
  """The SI-ConvNet layer (without its ReLU): rescale, shared conv + bias, rescale back, max.

  The shared convolution runs once per distinct input window: for a factor below 1 the rescale
  back reads only a central window of the convolution's output, so only that window (and the input
  it needs) is computed (`_window_operators`); copies of equal size share one call.

  Args:
    x: ``(batch, H, W, in)``.
    kernel: ``(k, k, in, out)`` HWIO.
    bias: ``(out,)``.
    scales: the rescaling factors (1 passes the input through untouched).
    impl: convolution algorithm, see `stir_jax.layers.conv.conv2d`.
    precision: of the convolutions and the rescalings.
    padding: zero padding of the shared convolution, applied to each rescaled copy (0, valid, in
      the paper's models; the sesn repository's ``Kanazawa_SIConv2d`` takes it as an argument).

  Returns:
    ``(batch, H + 2 padding - k + 1, W + 2 padding - k + 1, out)``, the promoted dtype of x,
    kernel and bias: the maximum over scales of the back-rescaled responses.
  """
  x, kernel, bias = promote_dtype(x, kernel, bias)
  _, h, w, _ = x.shape
  k = kernel.shape[0]
  resize = lambda z, *mats: apply_separable(z, *mats, precision=precision)
  by_window = {}  # input window (rows, cols) -> [(scale index, rescaled input, back matrices)]
  for i, s in enumerate(scales):
    if s == 1:
      padded = jnp.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
      by_window.setdefault(padded.shape[1:3], []).append((i, padded, None))
      continue
    in_h, in_w, back_h, back_w = _window_operators(h, w, k, s, padding)
    by_window.setdefault((len(in_h), len(in_w)), []).append(
        (i, resize(x, in_h, in_w), (back_h, back_w)))
  outputs = [None] * len(scales)
  for items in by_window.values():
    stacked = jnp.concatenate([z for _, z, _ in items], axis=0)
    responses = jnp.split(conv2d(stacked, kernel, bias, impl=impl, precision=precision),
                          len(items))
    for (i, _, back), y in zip(items, responses):
      outputs[i] = y if back is None else resize(y, *back)
  return jnp.max(jnp.stack(outputs), axis=0)


class _ConvParams(nn.Module):
  """A conv's kernel and bias, PyTorch-initialised, under one name (the reference's layout)."""
  features: int
  kernel_size: int
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, in_features: int) -> tuple[jax.Array, jax.Array]:
    k = self.kernel_size
    init = torch_uniform(in_features * k * k)
    return (self.param("kernel", init, (k, k, in_features, self.features), self.param_dtype),
            self.param("bias", init, (self.features,), self.param_dtype))


class KanazawaConv(nn.Module):
  """SI-ConvNet layer over `kanazawa_conv2d`: (B, H, W, Cin) -> (B, H', W', features) with
  ``H' = H + 2 padding - k + 1``.

  Parameters ``conv/kernel`` (k, k, Cin, features) and ``conv/bias``, as the reference.

  Attributes:
    features: output channels.
    kernel_size: conv kernel side.
    scales: the rescaling factors (1 passes the input through untouched).
    impl: convolution algorithm, see `stir_jax.layers.conv.conv2d`.
    dtype, param_dtype, precision: as flax.linen.Conv (precision default "highest"); the
      rescalings run in dtype with this precision.
    padding: zero padding of the shared convolution (0 in the paper's models; the sesn
      repository's ``Kanazawa_SIConv2d(..., padding=p)``); the output is then
      ``H + 2 padding - k + 1``.
  """
  features: int
  kernel_size: int = 7
  scales: Sequence[float] = SCALES
  impl: str = "auto"
  dtype: Optional[Dtype] = None
  param_dtype: Dtype = jnp.float32
  precision: PrecisionLike = DEFAULT_PRECISION
  padding: int = 0

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    kernel, bias = _ConvParams(self.features, self.kernel_size, self.param_dtype,
                               name="conv")(x.shape[-1])
    x, kernel, bias = promote_dtype(x, kernel, bias, dtype=self.dtype)
    return kanazawa_conv2d(x, kernel, bias, self.scales, self.impl, self.precision,
                           self.padding)
