"""The DSS MNIST-scale models (Worrall & Welling, "Deep Scale-spaces: Equivariance Over Scale",
NeurIPS 2019) as the SESN authors benchmark them: ``MNIST_DSS_Scalar`` and ``MNIST_DSS_Vector``
built by the factories ``mnist_dss_scalar_28`` and ``mnist_dss_vector_28`` of ISosnovik/sesn (commit
deaa16c, ``models/mnist_dss.py``), on the layers of `stir_jax.layers.dss`.

Both lift with the Bessel (discrete Gaussian) scale space of 2 scales, base 2, zero scale 0.25
(scale 1 blurred with variance 0.1875, half-width 4), convolve with `Dconv2d` (1 scale tap, 7x7,
dilations 1 and 2, "same" padding, no bias, He init), and end in the sesn head (`common.Head`) on
the final (B, 2, 2, 95) map. Channels 32, 63, 95; pools 2, 2 and 4 with padding 2
(28 -> 14 -> 7 -> 2).

* `MnistDSSScalar` (``mnist_dss_scalar_28``): 3 x [BesselConv2d -> Dconv2d -> max over scales ->
  ReLU -> max-pool -> BatchNorm2d]: every layer lifts its (plain) input anew.
* `MnistDSSVector` (``mnist_dss_vector_28``): one BesselConv2d, then 3 x [Dconv2d -> ReLU ->
  MaxPool3d(1, k, k) -> BatchNorm3d], and the max over scales after the last batch norm.

The max over scales sends a tie's gradient to the first scale, as PyTorch's ``max``.

Parameters mirror the PyTorch state dict, named after the ``nn.Sequential`` index (``main1`` the
first Dconv2d with ``weights`` (O, I, 1, 7, 7), ``main5`` a batch norm, ...) and the head
``linear``; `from_torch` converts a state dict (the Bessel kernels are recomputed, not read).
Checked against the authors' outputs and gradients
(tests/fixtures/peers/model_mnist_dss_*_28.npz, tests/models/test_mnist_sesn_dss.py).

>>> module, variables = stir_jax.convert.from_sesn_model("mnist_dss_vector_28", state_dict)
>>> module.apply(variables, x).shape                      # x (B, 28, 28, 1)
(B, 10)
"""
from __future__ import annotations


import flax.linen as nn
import jax
import numpy as np

from stir_jax.layers.dss import BesselConv2d, Dconv2d
from stir_jax.models.common import MnistBase, compute_input
from stir_jax.models.mnist_scale.common import C1, C2, C3, Head, batch_norm, head_from_torch
from stir_jax.models.mnist_scale.common import max_pool, torch_bn
from stir_jax.models.mnist_scale.sesn import scale_max

NUM_SCALES, BASE, ZERO_SCALE, KERNEL = 2, 2, 0.25, (1, 7, 7)
POOLS = ((2, 0), (2, 0), (4, 2))  # (window, padding) of the three max-pools
# Sequential indices of the Dconv2d layers and of the batch norms in the PyTorch models.
SCALAR_LAYERS = ((1, 7, 13), (5, 11, 17))
VECTOR_LAYERS = ((1, 5, 9), (4, 8, 12))


class _MnistDSS(MnistBase):
  """Shared fields (`stir_jax.models.common.MnistBase`; one form: impl "auto" or "direct");
  subclasses define the body."""
  impls = ("direct",)

  def _lift(self, x: jax.Array) -> jax.Array:
    self.checked_impl()
    return self.layer(BesselConv2d, NUM_SCALES, base=BASE, zero_scale=ZERO_SCALE)(x)

  def _dconv(self, features: int, index: int) -> nn.Module:
    return self.layer(Dconv2d, features, KERNEL, base=BASE, num_out_scales=NUM_SCALES,
                      name=f"main{index}")

  def _bn(self, train: bool, index: int) -> nn.BatchNorm:
    return batch_norm(train, f"main{index}", self.dtype, self.param_dtype)


class MnistDSSScalar(_MnistDSS):
  """``MNIST_DSS_Scalar`` of ``mnist_dss_scalar_28``: (B, 28, 28, 1) -> (B, num_classes) logits.

  Attributes:
    num_classes: logits per sample.
    dtype, param_dtype, precision: as flax.linen.Conv (precision default "highest").
  """

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    x = compute_input(x, self.dtype)
    for conv, bn, features, pool in zip(*SCALAR_LAYERS, (C1, C2, C3), POOLS):
      x = scale_max(self._dconv(features, conv)(self._lift(x)))
      x = self._bn(train, bn)(max_pool(nn.relu(x), *pool))
    return self.layer(Head, self.num_classes, name="linear")(x, train)


class MnistDSSVector(_MnistDSS):
  """``MNIST_DSS_Vector`` of ``mnist_dss_vector_28``: (B, 28, 28, 1) -> (B, num_classes) logits.

  Attributes: as `MnistDSSScalar`.
  """

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    x = self._lift(compute_input(x, self.dtype))                      # (B, 2, 28, 28, 1)
    for conv, bn, features, pool in zip(*VECTOR_LAYERS, (C1, C2, C3), POOLS):
      x = self._dconv(features, conv)(x)
      x = self._bn(train, bn)(max_pool(nn.relu(x), *pool))
    return self.layer(Head, self.num_classes, name="linear")(scale_max(x), train)


def from_torch(state: dict) -> dict:
  """A PyTorch state dict of either model (numpy arrays) -> ``{"params", "batch_stats"}``.

  ``main.<i>.weights`` (O, I, 1, 7, 7) keeps its layout under ``main<i>``; the Bessel buffers
  (``kernelx_*``, ``kernely_*``) and ``num_batches_tracked`` are skipped. The model is recognised
  by its layer names (``MNIST_DSS_Scalar`` has a Dconv2d at ``main.7``).
  """
  convs, bns = SCALAR_LAYERS if "main.7.weights" in state else VECTOR_LAYERS
  head_params, head_stats = head_from_torch(state)
  params, stats = {"linear": head_params}, {"linear": head_stats}
  for i in convs:
    params[f"main{i}"] = {"weights": np.asarray(state[f"main.{i}.weights"], np.float32)}
  for i in bns:
    params[f"main{i}"], stats[f"main{i}"] = torch_bn(state, f"main.{i}")
  return {"params": params, "batch_stats": stats}
