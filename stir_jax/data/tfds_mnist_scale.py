"""A tensorflow-datasets builder for MNIST-scale: ``tfds.load("mnist_scale/seed_<k>")``, k = 0..5.

Importing this module registers the builder ``mnist_scale`` with one config per realisation.
Features:

  image:   (28, 28, 1) uint8, stored as lossless PNG (the pixels equal the npz's)
  label:   ClassLabel, names from the file's lbldata
  scale:   float32, the factor s the digit was shrunk by
  source:  int32, the digit's index among the 70 000 source digits

Splits train, validation, test, each in npz order (shuffling disabled).

Where the npz comes from, in order:
  1. ``<manual_dir>/mnist_scale_<k>.npz`` (manual_dir: the DownloadConfig's, by default
     ``<data_dir>/downloads/manual``) - e.g. one made by
     ``python -m stir_jax.data mnist-scale --seed k --out <manual_dir>/mnist_scale_k.npz``;
  2. local generation (`stir_jax.data.mnist_scale.generate_mnist_scale`) from TFDS ``mnist``.
The published PNG realisations of the sesn authors are not downloaded: their random streams differ
from ours (see `stir_jax.data.mnist_scale`), and a builder must give the same data on every run.

Example:

  >>> import stir_jax.data.tfds_mnist_scale  # Registers "mnist_scale".
  >>> ds = tfds.load("mnist_scale/seed_0", split="train")
"""
from __future__ import annotations

import dataclasses
import pathlib

import numpy as np

from stir_jax.data import mnist_scale_recipe as mnist_scale
from stir_jax.data import tf_cpu

tfds = tf_cpu.tensorflow_datasets()  # one line naming the extra where it is missing

SPLITS = {"train": "train", "validation": "valid", "test": "test"}

_CITATION = """\
@inproceedings{sosnovik2020scale,
  title={Scale-Equivariant Steerable Networks},
  author={Sosnovik, Ivan and Szmaja, Micha{\\l} and Smeulders, Arnold},
  booktitle={International Conference on Learning Representations (ICLR)},
  year={2020}
}"""


@dataclasses.dataclass
class MnistScaleConfig(tfds.core.BuilderConfig):
  """One realisation.

  Attributes:
    seed: its seed (`mnist_scale.generate_mnist_scale`).
  """
  seed: int = 0


class MnistScale(tfds.core.GeneratorBasedBuilder):
  """MNIST-scale: MNIST digits shrunk by s ~ U(0.3, 1) (Sosnovik et al. 2020)."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "stir_jax's numpy-seeded realisations of the sesn recipe."}
  BUILDER_CONFIGS = [MnistScaleConfig(name=f"seed_{k}", seed=k,
                                      description=f"Realisation {k} (numpy seed {k}).")
                     for k in range(mnist_scale.NUM_REALISATIONS)]
  MANUAL_DOWNLOAD_INSTRUCTIONS = """\
  Optional. Put mnist_scale_<k>.npz (python -m stir_jax.data mnist-scale --seed <k> --out ...) in
  the manual folder; without it the realisation is generated from TFDS mnist.
  """

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
        description=("MNIST-scale: every 28x28 digit shrunk about the centre by its own "
                     "s ~ U(0.3, 1.0); 10 000 train, 2 000 validation, 50 000 test images, "
                     "label-stratified. " + self.builder_config.description),
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=(28, 28, 1), dtype=np.uint8,
                                         encoding_format="png"),
            "label": tfds.features.ClassLabel(),  # Names are read from the file's lbldata.
            "scale": tfds.features.Tensor(shape=(), dtype=np.float32),
            "source": tfds.features.Tensor(shape=(), dtype=np.int32),
        }),
        supervised_keys=("image", "label"),
        homepage="https://github.com/ISosnovik/sesn",
        citation=_CITATION,
        disable_shuffling=True,
    )

  def _obtain(self, dl_manager) -> mnist_scale.MnistScaleData:
    seed = self.builder_config.seed
    try:
      folder = pathlib.Path(dl_manager.manual_dir)
    except (AssertionError, ValueError):  # No manual folder, or an empty one.
      folder = None
    path = folder / f"mnist_scale_{seed}.npz" if folder is not None else None
    if path is not None and path.is_file():
      data = mnist_scale.load_mnist_scale(path)
      if data.seed != seed:
        raise ValueError(f"{path} holds realisation {data.seed}, not {seed}")
      return data
    from stir_jax.data import mnist  # pylint: disable=g-import-not-at-top
    return mnist_scale.generate_mnist_scale(mnist.load_tfds_digits("mnist"), seed)

  def _split_generators(self, dl_manager):
    data = self._obtain(dl_manager)
    label = self.info.features["label"]
    if label.num_classes is None:
      label.names = list(data.lbldata)
    return {name: self._generate_examples(data, split) for name, split in SPLITS.items()}

  def _generate_examples(self, data: mnist_scale.MnistScaleData, split: str):
    for i in range(data.num_examples(split)):
      yield i, {"image": data.images[split][i][..., None],
                "label": int(data.labels[split][i]),
                "scale": np.float32(data.scales[split][i]),
                "source": np.int32(data.sources[split][i])}
