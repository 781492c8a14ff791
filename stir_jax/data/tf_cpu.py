"""TensorFlow and tensorflow-datasets for the input pipeline, on the CPU only.

TensorFlow only feeds JAX from the host, so its GPUs are hidden once, before first use. Without the
extra ``data`` installed, either function raises `stir_jax._optional.MissingExtraError` (one line).
"""
from __future__ import annotations

import functools
import os

from stir_jax import _optional


@functools.lru_cache(maxsize=None)
def tensorflow():
  """Imports TensorFlow once, hiding its GPUs (it only feeds JAX from the CPU)."""
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  tf = _optional.require("tensorflow", extra="data")
  try:
    tf.config.set_visible_devices([], "GPU")
  except (RuntimeError, ValueError):  # Already initialised elsewhere; leave it.
    pass
  return tf


def tensorflow_datasets():
  """tensorflow_datasets, imported after `tensorflow` has hidden TensorFlow's GPUs."""
  tensorflow()
  return _optional.require("tensorflow_datasets", extra="data")
