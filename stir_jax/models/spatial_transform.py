"""Spatial transformer network: a learned affine warp in front of the standard CNN.

A small localisation network predicts an affine matrix ``theta`` per image; the image is resampled
with it (bilinear, zeros outside) and classified by the standard body (two valid 7x7 convs, ReLU,
global max, dense). Invariance to scale (and translation) is only as good as the learned warp's
ability to undo it; nothing is equivariant by construction, and at initialisation the warp is the
identity.

Reference: ``SpatialTransformModel`` of the authors' code (``transform_model.{0,3,7,9}.*`` and
``base_model.{0,2,5}.*``).
"""
from __future__ import annotations

from typing import Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from stir_jax.layers.dtypes import DEFAULT_PRECISION, Dtype, PrecisionLike, canonical_precision
from stir_jax.layers.resample import affine_warp
from stir_jax.models import common
from stir_jax.models.ensemble import body_from_torch
from stir_jax.models.standard import StandardCNN

IDENTITY_THETA = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)


def _identity_bias(key: jax.Array, shape, dtype=jnp.float32) -> jax.Array:
  del key
  return jnp.broadcast_to(jnp.asarray(IDENTITY_THETA, dtype), shape)


class Localisation(nn.Module):
  """Localisation net: conv3x3 16, maxpool 2, ReLU, conv3x3 16, maxpool 2, ReLU, dense 16, ReLU,
  dense 6 (zero weight, identity bias).

  The flatten before the first dense layer runs in (C, H, W) order, as PyTorch's NCHW flatten, so
  the reference weights apply unchanged. dtype, param_dtype, precision as flax.linen.Conv.
  """
  dtype: Optional[Dtype] = None  # computation dtype; None: inferred (float32 for float32 images)
  param_dtype: Dtype = jnp.float32
  precision: PrecisionLike = DEFAULT_PRECISION  # of every conv and matmul ("default": backend's)

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """Predicts affine matrices.

    Args:
      x: ``(batch, 64, 64, channels)``.

    Returns:
      theta ``(batch, 2, 3)``.
    """
    dt = common.dtype_kwargs(self)
    y = common.Conv(16, 3, 1, name="conv1", **dt)(x)
    y = nn.relu(nn.max_pool(y, (2, 2), (2, 2)))
    y = common.Conv(16, 3, 1, name="conv2", **dt)(y)
    y = nn.relu(nn.max_pool(y, (2, 2), (2, 2)))
    y = jnp.transpose(y, (0, 3, 1, 2)).reshape(y.shape[0], -1)  # (C, H, W) order
    y = nn.relu(common.Dense(16, name="fc1", **dt)(y))
    theta = nn.Dense(6, kernel_init=nn.initializers.zeros, bias_init=_identity_bias,
                     dtype=self.dtype, param_dtype=self.param_dtype,
                     precision=canonical_precision(self.precision), name="fc2")(y)
    return theta.reshape(-1, 2, 3)


class SpatialTransformModel(common.ModelBase):
  """Spatial transformer (affine, bilinear sampling) followed by the standard CNN.

  Attributes:
    num_classes: logits per sample.
    kernel_size: conv kernel side of the classification body (valid convs).
    interpolation: unused (kept for a uniform model signature).
    impl: convolution algorithm of the body, see `stir_jax.layers.conv.conv2d`.
    dtype, param_dtype, precision: as flax.linen.Conv (precision default "highest"); the warp
      samples in dtype with float32 coordinates.
  """

  @nn.compact
  def __call__(self, x: jax.Array, with_aux: bool = False):
    """Classifies ``x``.

    Args:
      x: ``(batch, 64, 64, channels)`` float32 images (the localisation net assumes 64x64).
      with_aux: also return intermediates.

    Returns:
      ``logits (batch, num_classes)``, or ``(logits, aux)`` with aux ``theta`` (B, 2, 3),
      ``transformed`` (B, 64, 64, C), ``stage1`` (B, 58, 58, 16), ``stage2`` (B, 52, 52, 32) and
      ``features`` (B, 32) of the body on the warped image.
    """
    x = common.compute_input(x, self.dtype)
    theta = self.layer(Localisation, name="localisation")(x)
    transformed = affine_warp(x, theta, self.precision)
    logits, aux = self.layer(StandardCNN, self.num_classes, self.kernel_size, name="body")(
        transformed, with_aux=True)
    if not with_aux:
      return logits
    return logits, dict(aux, theta=theta, transformed=transformed)

  @staticmethod
  def from_torch(state: dict[str, np.ndarray]) -> dict:
    """Reference state_dict (``transform_model.*``, ``base_model.*``) to this model's ``params``."""
    return {
        "localisation": {
            "conv1": common.torch_conv(state, "transform_model.0"),
            "conv2": common.torch_conv(state, "transform_model.3"),
            "fc1": common.torch_dense(state, "transform_model.7"),
            "fc2": common.torch_dense(state, "transform_model.9"),
        },
        "body": body_from_torch(state, "base_model"),
    }


from_torch = SpatialTransformModel.from_torch
