"""stir_jax: the STIR benchmark and scale-equivariant CNNs in JAX/Flax.

A reimplementation of Altstidl et al., "Just a Matter of Scale? Reevaluating Scale
Equivariance in Convolutional Neural Networks" (arXiv 2211.10288, IJCNN 2023).
"""
import os as _os

# TensorFlow is only used for tf.data on the CPU; keep its start-up quiet.
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
_os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

# XLA:CPU's YNNPACK convolutions are several times slower than its own here; see xla_flags.
from stir_jax import xla_flags as _xla_flags  # pylint: disable=g-import-not-at-top

_xla_flags.apply()

__version__ = "0.1.0"
