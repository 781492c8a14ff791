"""Ensemble over a Gaussian pyramid: one standard CNN shared by three image scales.

The input is decomposed into a 3-level Gaussian pyramid (64, 32, 16 pixels); one shared plain CNN
(two 7x7 convs with zero 'same' padding, ReLU, global max, dense) classifies every level and the
logits are averaged. The model is not equivariant by construction: it is invariant to a downscaling
by exactly 2 or 4 only up to the pyramid's blur, border effects and the levels dropped at the ends,
and merely robust to intermediate scales.

Reference: ``EnsembleModel`` of the authors' code (parameters ``base_model.{0,2,5}.*``).
"""
from __future__ import annotations

from typing import Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from stir_jax.layers.dtypes import DEFAULT_PRECISION, Dtype, PrecisionLike
from stir_jax.layers.resample import gaussian_pyramid
from stir_jax.models import common


class PlainBody(nn.Module):
  """The standard two-conv CNN body with a choice of padding: conv C->16, ReLU, conv 16->32, ReLU,
  global max, dense.

  `stir_jax.models.standard.StandardCNN` with 'valid' convs is this body with ``padding="VALID"``;
  the ensemble needs zero 'same' padding. Translation-equivariant up to the convolutions' borders;
  the global max makes the features translation-invariant. No scale equivariance.

  Attributes:
    num_classes: logits per sample.
    kernel_size: side of both conv kernels.
    padding: "VALID", or an int for symmetric zero padding ('same' for 3 with 7x7 kernels).
    impl: convolution algorithm, see `stir_jax.layers.conv.conv2d`.
    dtype, param_dtype, precision: as flax.linen.Conv (precision default "highest").
  """
  num_classes: int
  kernel_size: int = 7
  padding: str | int = "VALID"
  impl: str = "auto"
  dtype: Optional[Dtype] = None  # computation dtype; None: inferred (float32 for float32 images)
  param_dtype: Dtype = jnp.float32
  precision: PrecisionLike = DEFAULT_PRECISION  # of every conv and matmul ("default": backend's)

  @nn.compact
  def __call__(self, x: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Applies the body.

    Args:
      x: ``(batch, height, width, channels)``.

    Returns:
      ``(logits (batch, num_classes), aux)`` with aux ``stage1`` (B, H1, W1, 16), ``stage2``
      (B, H2, W2, 32) and ``features`` (B, 32).
    """
    def conv(features, name):
      return common.Conv(features, self.kernel_size, self.padding, name=name, impl=self.impl,
                         **common.dtype_kwargs(self))

    stage1 = nn.relu(conv(16, "conv1")(x))
    stage2 = nn.relu(conv(32, "conv2")(stage1))
    features = common.global_max(stage2)
    logits = common.Dense(self.num_classes, name="lin", **common.dtype_kwargs(self))(features)
    return logits, {"stage1": stage1, "stage2": stage2, "features": features}


def body_from_torch(state: dict[str, np.ndarray], prefix: str = "base_model") -> dict:
  """``{prefix}.{0,2,5}.*`` of a reference ``nn.Sequential`` body as conv1/conv2/lin params."""
  return {"conv1": common.torch_conv(state, f"{prefix}.0"),
          "conv2": common.torch_conv(state, f"{prefix}.2"),
          "lin": common.torch_dense(state, f"{prefix}.5")}


class EnsembleModel(common.ModelBase):
  """Shared plain CNN on a 3-level Gaussian pyramid, logits averaged over the levels.

  Attributes:
    num_classes: logits per sample.
    kernel_size: conv kernel side (odd); 'same' padding ``kernel_size // 2``.
    interpolation: unused (kept for a uniform model signature).
    levels: pyramid levels, the input included.
    impl: convolution algorithm, see `stir_jax.layers.conv.conv2d`.
    dtype, param_dtype, precision: as flax.linen.Conv (precision default "highest"); the pyramid
      is computed in dtype with this precision.
  """
  levels: int = 3

  @nn.compact
  def __call__(self, x: jax.Array, with_aux: bool = False):
    """Logits (batch, num_classes) of images x (batch, 64, 64, channels), or (logits, aux) with aux
    ``pyramid`` (list of ``(B, 64 / 2**l, 64 / 2**l, C)``), ``level_logits`` (levels, B,
    num_classes) and, for the full-resolution level, ``stage1`` (B, 64, 64, 16), ``stage2`` (B,
    64, 64, 32), ``features`` (B, 32).
    """
    body = self.layer(PlainBody, self.num_classes, self.kernel_size, self.kernel_size // 2,
                      name="body")
    x = common.compute_input(x, self.dtype)
    pyramid = gaussian_pyramid(x, self.levels, precision=self.precision)
    outputs = [body(level) for level in pyramid]
    level_logits = jnp.stack([logits for logits, _ in outputs])
    logits = jnp.mean(level_logits, axis=0)
    if not with_aux:
      return logits
    aux = dict(outputs[0][1])
    aux.update(pyramid=pyramid, level_logits=level_logits)
    return logits, aux

  @staticmethod
  def from_torch(state: dict[str, np.ndarray]) -> dict:
    """Reference state_dict (``base_model.{0,2,5}.*``) to this model's ``params``."""
    return {"body": body_from_torch(state, "base_model")}


from_torch = EnsembleModel.from_torch
