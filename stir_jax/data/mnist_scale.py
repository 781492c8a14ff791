"""MNIST-scale (Sosnovik, Szmaja, Smeulders, ICLR 2020; after Ghosh & Gupta 2019): generator, npz
file format and tf.data input.

The generator and the file (the recipe, what differs from the published data, the file's keys) are
`stir_jax.data.mnist_scale_recipe`, re-exported here; this module adds the tf.data input, from an
npz or from the TFDS builder ``mnist_scale`` (`stir_jax.data.tfds_mnist_scale`).

Example:

  >>> source = mnist.read_idx_folder("MNIST/raw")
  >>> data = generate_mnist_scale(source, seed=0)
  >>> save_mnist_scale("data/mnist_scale_0.npz", data)
  >>> ds = make_dataset("data/mnist_scale_0.npz", "train", batch_size=128, shuffle=True, seed=1)
"""
from __future__ import annotations

from typing import Union

import numpy as np

from stir_jax.data import pipeline
from stir_jax.data import tf_cpu
# pylint: disable=unused-import  # the recipe and the file, re-exported: one module for users
from stir_jax.data.mnist_scale_recipe import DataFileError, GenerationError, IMAGE_SIZE, MEAN
from stir_jax.data.mnist_scale_recipe import MnistScaleData, NUM_REALISATIONS, PathLike
from stir_jax.data.mnist_scale_recipe import SCALE_RANGE, SIZES, SPLITS, STD, _check_split
from stir_jax.data.mnist_scale_recipe import apportion, check, generate_mnist_scale
from stir_jax.data.mnist_scale_recipe import is_mnist_scale_file, load_mnist_scale, rescale
from stir_jax.data.mnist_scale_recipe import save_mnist_scale, stratified_split, summarize
# pylint: enable=unused-import


# --- input pipeline ------------------------------------------------------------------------------

Source = Union[MnistScaleData, PathLike, pipeline.TfdsSource]
_TFDS_SPLITS = {"train": "train", "valid": "validation", "test": "test"}


def _tfds_arrays(source, split: str) -> dict[str, np.ndarray]:
  """A split of the TFDS ``mnist_scale`` builder (`stir_jax.data.tfds_mnist_scale`), whose
  records keep the npz order, as numpy arrays."""
  tfds = tf_cpu.tensorflow_datasets()  # TensorFlow's GPUs hidden
  from stir_jax.data import tfds_mnist_scale  # pylint: disable=g-import-not-at-top,unused-import

  builder = tfds.builder(source.name, data_dir=source.data_dir)
  if not builder.is_prepared():
    builder.download_and_prepare(**(source.download_and_prepare_kwargs or {}))
  ds = builder.as_dataset(split=_TFDS_SPLITS[split], batch_size=-1, shuffle_files=False)
  arrays = tfds.as_numpy(ds)
  return {"image": arrays["image"].reshape((-1, IMAGE_SIZE, IMAGE_SIZE, 1)),
          "label": arrays["label"].astype(np.int32), "scale": arrays["scale"].astype(np.float32)}


def host_arrays(source: Source, split: str, *, process_index: int = 0, process_count: int = 1,
                pad: bool = False) -> dict[str, np.ndarray]:
  """A split as image (N, 28, 28, 1) uint8, label (N,) int32, scale (N,) float32, or this
  process's contiguous share of it (`pipeline.shard`). ``source``: an MnistScaleData, the path of
  an MNIST-scale npz, or a `pipeline.TfdsSource` naming e.g. "mnist_scale/seed_0"."""
  split = _check_split(split)
  if isinstance(source, pipeline.TfdsSource):
    arrays = _tfds_arrays(source, split)
  else:
    data = source if isinstance(source, MnistScaleData) else load_mnist_scale(source)
    arrays = {"image": data.images[split][..., None],
              "label": data.labels[split].astype(np.int32),
              "scale": data.scales[split].astype(np.float32)}
  return pipeline.shard(arrays, process_index, process_count, pad=pad)


def make_dataset(source: Source, split: str, *, batch_size: int, shuffle: bool, seed: int = 0,
                 drop_remainder: bool = False, process_index: int = 0, process_count: int = 1,
                 pad_remainder: bool = False, order: np.ndarray | None = None):
  """A tf.data pipeline of this process's part of every global batch of one split, with the
  global batches, shuffling, process shares and padding of `pipeline.make_dataset`.

  Returns:
    A tf.data.Dataset of dicts: image (b, 28, 28, 1) float32 in [0, 1] (not yet normalised with
    `MEAN` / `STD`: the training steps do that, config.input_mean / input_std), label (b,) int32,
    scale (b,) float32 [, mask (b,) bool].
  """
  return pipeline.batch_arrays(host_arrays(source, split), batch_size=batch_size,
                               shuffle=shuffle, seed=seed, drop_remainder=drop_remainder,
                               process_index=process_index, process_count=process_count,
                               pad_remainder=pad_remainder, order=order)
