"""Scale-equivariant steerable networks: SESN (Hermite basis) and DISCO.

The layers are `stir_jax.layers.sesn` (`sesn_lift`, `sesn_scale_conv`, `SESConvZ2H`, `SESConvHH`,
`sesn_basis_for`). Each conv kernel is a trained combination of ``F = 49`` fixed basis functions
given at ``S = 4`` scales (`stir_jax.layers.sesn_basis`). Layer 1 (Z2 -> H) correlates the image
with the kernel at every scale, giving a scale axis; layer 2 (H -> H, scale filter size 1)
correlates scale slice ``s`` with the layer-2 kernel at scale ``s`` (no mixing across scales). ReLU
follows each layer, then a global max over (scale, y, x) and a dense layer.

Scale behaviour: upscaling the input by ``scales[s+1] / scales[s]`` approximately upscales the maps
and shifts the scale axis by one towards larger scales (up to the ends of the finite scale axis and
the image border), so the global max is approximately scale-invariant over the basis' scale range.
With the Hermite basis the equivariance is limited by sampling and truncating continuous functions;
the DISCO basis was optimised to make it as exact as possible on the pixel grid.

Model variants (reference ``hermite`` / ``disco``): 15x15 support, effective size 7.
* `HermiteModel`: Hermite basis "B", scales (2, 2.52, 3.17, 4), mult 1.5, max order 4.
* `DiscoModel`: DISCO basis "B", scales (1, 1.26, 1.59, 2), mixing Hermite basis with min scale 1.9,
  mult 1.9, max order 4 (shipped raw tensor; only this configuration).

Parameters keep the reference layout: layer-1 ``weight`` (out, in, F), layer-2 ``weight``
(out, in, 1, F), zero-initialised ``bias`` (out,). Bases are constants, not parameters.
"""
from __future__ import annotations


import flax.linen as nn
import jax
import numpy as np

from stir_jax.layers import sesn_basis
from stir_jax.layers.sesn import SESConvHH, SESConvZ2H, sesn_basis_for
from stir_jax.models import common


class _SESNModel(common.ModelBase):
  """SESN body: Z2->H conv C->16, ReLU, H->H conv 16->32, ReLU, global max, dense.

  Subclasses define `_basis` and `_scales` (the basis scales, one per scale channel).
  """

  def _basis(self) -> np.ndarray:
    raise NotImplementedError

  def _scales(self) -> tuple[float, ...]:
    raise NotImplementedError

  def scale_axis_ratio(self) -> float:
    """Ratio of neighbouring scale channels' basis scales: (last / first)**(1 / (S - 1)), 2**(1/3)
    for both bases (their scales are that geometric series rounded to 2 decimals)."""
    scales = np.asarray(self._scales(), np.float64)
    ratio = (scales[-1] / scales[0]) ** (1 / (len(scales) - 1))
    # the listed scales are rounded: geometric to 1%
    assert np.allclose(scales[1:] / scales[:-1], ratio, rtol=1e-2), scales
    return float(ratio)

  @nn.compact
  def __call__(self, x: jax.Array, with_aux: bool = False):
    """Logits (batch, num_classes) of images x (batch, 64, 64, channels), or (logits, aux) with aux
    ``stage1`` (B, 4, 50, 50, 16), ``stage2`` (B, 4, 36, 36, 32) and ``features`` (B, 32) (sizes
    for the default kernel).
    """
    basis = self._basis()
    x = common.compute_input(x, self.dtype)
    stage1 = nn.relu(self.layer(SESConvZ2H, 16, basis, name="conv1")(x))
    stage2 = nn.relu(self.layer(SESConvHH, 32, basis, name="conv2")(stage1))
    return self.classify(stage2, with_aux, stage1=stage1)

  @staticmethod
  def from_torch(state: dict[str, np.ndarray]) -> dict:
    """Reference state_dict to ``params``; the ``conv*.basis.basis`` buffers are not parameters."""
    return from_torch(state)


class HermiteModel(_SESNModel):
  """SESN with the Hermite basis "B": support ``2k + 1`` (15), effective size ``k`` (7), scales
  (2, 2.52, 3.17, 4), mult 1.5, max order 4.

  Attributes:
    num_classes: logits per sample.
    kernel_size: effective kernel size ``k``; the support is ``2k + 1``.
    interpolation: unused (kept for a uniform model signature).
  """

  def _basis(self) -> np.ndarray:
    return sesn_basis_for("hermite", self.kernel_size)

  def _scales(self) -> tuple[float, ...]:
    return sesn_basis.HERMITE_SCALES


class DiscoModel(_SESNModel):
  """SESN with the DISCO basis "B": support 15, effective size 7, scales (1, 1.26, 1.59, 2), mixing
  Hermite functions with min scale 1.9, mult 1.9, max order 4.

  Attributes:
    num_classes: logits per sample.
    kernel_size: effective kernel size; only 7 is shipped (support 15).
    interpolation: unused (kept for a uniform model signature).
  """

  def _basis(self) -> np.ndarray:
    return sesn_basis_for("disco", self.kernel_size)

  def _scales(self) -> tuple[float, ...]:
    return sesn_basis.DISCO_SCALES


def from_torch(state: dict[str, np.ndarray]) -> dict:
  """Reference state_dict of the hermite or disco model to ``params``.

  ``conv1.weight`` (O, C, F), ``conv2.weight`` (O, C, 1, F) and the biases keep their layout; the
  ``conv*.basis.basis`` buffers are skipped (the bases are recomputed / loaded by our code).
  """
  return {"conv1": {"weight": np.asarray(state["conv1.weight"], np.float32),
                    "bias": np.asarray(state["conv1.bias"], np.float32)},
          "conv2": {"weight": np.asarray(state["conv2.weight"], np.float32),
                    "bias": np.asarray(state["conv2.bias"], np.float32)},
          "lin": common.torch_dense(state, "lin")}
