"""The paper's models: SiConv2d layers with scale pooling (pixel, slice, energy, soft) and conv3d."""
from __future__ import annotations

import functools

import jax
import flax.linen as nn

from stir_jax.layers.scale_pool import ScalePool
from stir_jax.layers.siconv import POOL_MODES_FUSED, SiConv2d
from stir_jax.layers.conv import conv3d, conv3d_relu_max
from stir_jax.layers.dtypes import promote_dtype
from stir_jax.layers.initializers import torch_uniform
from stir_jax.models import common


class ScalePoolCNN(common.ModelBase):
  """SiConv C->16 (29 scales) + pool, ReLU, SiConv 16->32 (26 scales) + pool, ReLU, global max, dense.

  Each SiConv2d applies one 7x7 kernel rescaled to 7, 9, ..., k + 2(S-1) pixels; the scale pool
  keeps, per pixel (pixel), per channel slice (slice, energy) or as a softmax mixture (soft), the
  best-responding kernel size. Equivariant to translations on the valid region; invariant to the
  object's scale only approximately (interpolated kernels, resampled images), which is what the
  paper measures. Pooling comes before the ReLU, as in the reference.

  x: (batch, 64, 64, channels) -> logits (batch, num_classes).
  aux: stage1 (B, 58, 58, 16), stage2 (B, 52, 52, 32), features (B, 32), pool1_indices and
  pool2_indices (pixel/soft: (B, H, W, C); slice/energy: (B, C)).

  Attributes: those of `common.ModelBase` (impl: the SiConv form, see
  `stir_jax.layers.siconv.siconv2d`), and
    pool: "pixel", "slice", "energy" (fused into the SiConv layer) or "soft".
    learnable_temperature: the soft pool's learnt temperature.
  """
  pool: str = "pixel"
  learnable_temperature: bool = False

  @nn.compact
  def __call__(self, x: jax.Array, with_aux: bool = False):
    conv = lambda c, name, **kw: self.layer(SiConv2d, c, kernel_size=self.kernel_size,
                                            interpolation=self.interpolation, name=name, **kw)
    if self.pool in POOL_MODES_FUSED:
      # SiConv fused with the scale pool (siconv2d_pool); these pools have no parameters.
      conv_pool = lambda c, name: conv(c, name, pool=self.pool)
    else:
      pool = functools.partial(self.layer, ScalePool, self.pool,
                               learnable_temperature=self.learnable_temperature)
      conv_pool = lambda c, name: lambda x: pool(name="pool" + name[-1])(conv(c, name)(x))
    x = common.compute_input(x, self.dtype)
    y, idx1 = conv_pool(16, "conv1")(x)
    stage1 = nn.relu(y)
    y, idx2 = conv_pool(32, "conv2")(stage1)
    stage2 = nn.relu(y)
    return self.classify(stage2, with_aux, stage1=stage1, pool1_indices=idx1,
                         pool2_indices=idx2)


class Conv3dCNN(common.ModelBase):
  """SiConv C->16 (29 scales), ReLU, a valid 7x7x7 3-D convolution over (scale, y, x) 16->32, ReLU,
  global max over scale and space, dense. Without aux the last three run as one
  `stir_jax.layers.conv.conv3d_relu_max`, whose gradient goes through each channel's maximum alone
  (as the authors' max_pool3d sends it).

  The 3-D convolution treats the scale axis like depth, so it is equivariant to shifts along scale
  only where the object's scale change maps to a whole kernel-size step; translation equivariance as
  for the SiConv layer.

  x: (batch, 64, 64, channels) -> logits; aux: stage1 (B, 29, 58, 58, 16),
  stage2 (B, 23, 52, 52, 32), features (B, 32).

  Attributes: those of `common.ModelBase`; impl is the form of both the SiConv layer
  (`stir_jax.layers.siconv.siconv2d`) and the 3-D convolution (`stir_jax.layers.conv.conv3d`).
  """

  @nn.compact
  def __call__(self, x: jax.Array, with_aux: bool = False):
    k = self.kernel_size
    x = common.compute_input(x, self.dtype)
    stage1 = nn.relu(self.layer(SiConv2d, 16, kernel_size=k, interpolation=self.interpolation,
                                name="conv1")(x))
    cin = stage1.shape[-1]
    init = torch_uniform(cin * k ** 3)
    kernel = self.param("conv2_kernel", init, (k, k, k, cin, 32), self.param_dtype)
    bias = self.param("conv2_bias", init, (32,), self.param_dtype)
    stage1_c, kernel, bias = promote_dtype(stage1, kernel, bias, dtype=self.dtype)
    if not with_aux:  # the same features; the backward pass through the maxima alone
      features = conv3d_relu_max(stage1_c, kernel, bias, impl=self.impl, precision=self.precision)
      return self.classify(None, with_aux, features=features)
    stage2 = nn.relu(conv3d(stage1_c, kernel, bias, impl=self.impl, precision=self.precision))
    return self.classify(stage2, with_aux, stage1=stage1)


def _siconv_from_torch(state: dict, name: str) -> dict:
  return common.torch_conv(state, name, weight_key="weights")


def from_torch(state: dict) -> dict:
  """Reference SiConv/ScalePool model state dict (conv1.weights, conv2.weights, lin.*) -> params."""
  return {"conv1": _siconv_from_torch(state, "conv1"),
          "conv2": _siconv_from_torch(state, "conv2"),
          "lin": common.torch_dense(state, "lin")}


def conv3d_from_torch(state: dict) -> dict:
  """Reference conv3d state dict -> params (Conv3d weight OIDHW -> DHWIO)."""
  return {"conv1": _siconv_from_torch(state, "conv1"),
          "conv2_kernel": state["conv2.weight"].transpose(2, 3, 4, 1, 0),
          "conv2_bias": state["conv2.bias"],
          "lin": common.torch_dense(state, "lin")}
