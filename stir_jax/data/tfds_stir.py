"""A tensorflow-datasets builder for STIR: ``tfds.load("stir/<domain>")``.

Importing this module registers the builder ``stir`` with one config per domain: emoji, mnist,
fashion_mnist, trafficsign, aerial. Features:

  image:     (64, 64, C) uint8 (C = 1 for emoji / mnist / fashion_mnist, 3 for trafficsign / aerial),
             stored as lossless PNG, so the pixels equal the npz's
  label:     ClassLabel, names from the file's lbldata
  scale:     int32 object size s (17..64)
  position:  (2,) int32 (x, y) of the object's top-left corner
  instance:  int32 instance index within its class

Splits train, validation, test hold all 48 sizes each, written in npz order (scale index 0..47,
i.e. s = 64..17, then class, then instance) with shuffling disabled, so
`stir_jax.data.pipeline.read_tfds_share` can slice sizes and hosts' shares by record index.

Where the npz comes from, in order:
  1. ``<manual_dir>/<domain>.npz`` (manual_dir: the DownloadConfig's, by default
     ``<data_dir>/downloads/manual``) - any STIR file, e.g. one made by
     ``python -m stir_jax.data generate``;
  2. for the four published domains, a download of ``<domain>.npz`` from Zenodo record 6578038;
  3. local generation: emoji always (Font Awesome ships with the package); fashion_mnist from
     Debian's /usr/share/datasets/fashion-mnist (or TFDS fashion_mnist); mnist from TFDS mnist.
trafficsign and aerial have no step 3 (their raw sources need registration): generate them with
the command line and put them in the manual folder.

Example:

  >>> import tensorflow_datasets as tfds
  >>> import stir_jax.data.tfds_stir  # Registers "stir".
  >>> ds = tfds.load("stir/emoji", split="train", data_dir="~/tensorflow_datasets")
"""
from __future__ import annotations

import dataclasses
import pathlib
import sys

import numpy as np

from stir_jax.data import stir_file
from stir_jax.data import tf_cpu

tfds = tf_cpu.tensorflow_datasets()  # one line naming the extra where it is missing

ZENODO_RECORD = 6578038
ZENODO_URL = "https://zenodo.org/record/6578038/files/{domain}.npz"
PUBLISHED = ("emoji", "mnist", "trafficsign", "aerial")
SPLITS = {"train": 0, "validation": 1, "test": 2}

_CITATION = """\
@inproceedings{altstidl2023just,
  title={Just a Matter of Scale? Reevaluating Scale Equivariance in Convolutional Neural Networks},
  author={Altstidl, Thomas and Nguyen, An and Schwinn, Leo and K{\\"o}ferl, Franz and
          Mutschler, Christopher and Eskofier, Bj{\\"o}rn and Zanca, Dario},
  booktitle={International Joint Conference on Neural Networks (IJCNN)},
  year={2023}
}"""


@dataclasses.dataclass
class StirConfig(tfds.core.BuilderConfig):
  """A STIR domain.

  Attributes:
    channels: 1 (grey) or 3 (colour).
  """
  channels: int = 1


class Stir(tfds.core.GeneratorBasedBuilder):
  """STIR: Scaled and Translated Image Recognition (Altstidl et al. 2022)."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "STIR npz layout of Zenodo record 6578038."}
  BUILDER_CONFIGS = [
      StirConfig(name="emoji", channels=1,
                 description="36 Font Awesome face icons, 1 per class, grey."),
      StirConfig(name="mnist", channels=1,
                 description="MNIST digits, 10 classes x 50 instances, grey."),
      StirConfig(name="fashion_mnist", channels=1,
                 description="Fashion-MNIST articles, 10 classes x 50 instances, grey."),
      StirConfig(name="trafficsign", channels=3,
                 description="Mapillary traffic signs, 16 classes x 25 instances, colour."),
      StirConfig(name="aerial", channels=3,
                 description="DOTA aerial objects, 9 classes x 25 instances, colour."),
  ]
  MANUAL_DOWNLOAD_INSTRUCTIONS = """\
  Optional. Put a STIR file named <domain>.npz (e.g. emoji.npz, trafficsign.npz) in the manual
  folder: a file from Zenodo record 6578038 or one made by
  `python -m stir_jax.data generate --domain <domain> --out <manual folder>/<domain>.npz`.
  Without it, the published file is downloaded (emoji, mnist, trafficsign, aerial) or generated
  locally (emoji, fashion_mnist, mnist).
  """

  def _info(self) -> tfds.core.DatasetInfo:
    channels = self.builder_config.channels
    return self.dataset_info_from_configs(
        description=(
            "STIR: every 64x64 image shows one object rescaled so that its bounding box is s x s "
            "(s = 17..64) at a random position. " + self.builder_config.description),
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=(64, 64, channels), dtype=np.uint8,
                                         encoding_format="png"),
            "label": tfds.features.ClassLabel(),  # Names are read from the file's lbldata.
            "scale": tfds.features.Tensor(shape=(), dtype=np.int32),
            "position": tfds.features.Tensor(shape=(2,), dtype=np.int32),
            "instance": tfds.features.Tensor(shape=(), dtype=np.int32),
        }),
        supervised_keys=("image", "label"),
        homepage=f"https://zenodo.org/record/{ZENODO_RECORD}",
        citation=_CITATION,
        disable_shuffling=True,
    )

  def _manual_file(self, dl_manager) -> pathlib.Path | None:
    try:
      folder = pathlib.Path(dl_manager.manual_dir)
    except (AssertionError, ValueError):  # No manual folder, or an empty one.
      return None
    path = folder / f"{self.builder_config.name}.npz"
    return path if path.is_file() else None

  def _obtain(self, dl_manager) -> stir_file.StirData:
    """The domain's data: manual file, else Zenodo download, else local generation."""
    name = self.builder_config.name
    path = self._manual_file(dl_manager)
    if path is not None:
      return stir_file.load_stir(path)
    problems = [f"no {name}.npz in the manual folder"]
    if name in PUBLISHED:
      try:
        path = pathlib.Path(dl_manager.download(ZENODO_URL.format(domain=name)))
        return stir_file.load_stir(path)
      except stir_file.StirFileError:
        raise
      except Exception as e:  # pylint: disable=broad-except  # No network, HTTP error, ...
        problems.append(f"download from Zenodo failed ({type(e).__name__}: {str(e)[:200]})")
    if name == "emoji":
      from stir_jax.data import emoji  # pylint: disable=g-import-not-at-top
      sys.stderr.write("stir/emoji: generating the emoji domain locally\n")
      return emoji.generate_emoji(emoji.EMOJI_NAMES)
    if name in ("mnist", "fashion_mnist"):
      from stir_jax.data import mnist  # pylint: disable=g-import-not-at-top
      from stir_jax.data import recipes  # pylint: disable=g-import-not-at-top
      try:
        if name == "fashion_mnist" and mnist.DEBIAN_FASHION_MNIST.is_dir():
          source = mnist.read_idx_folder(mnist.DEBIAN_FASHION_MNIST)
        else:
          source = mnist.load_tfds_digits(name)
        return mnist.generate_digits(source, mnist.DOMAINS[name]["names"], domain=name)
      except recipes.GenerationError as e:
        problems.append(f"local generation failed ({e})")
    raise RuntimeError(f"stir/{name}: no source: {'; '.join(problems)}. "
                       + " ".join(self.MANUAL_DOWNLOAD_INSTRUCTIONS.split()))

  def _split_generators(self, dl_manager):
    data = self._obtain(dl_manager)
    if data.num_channels != self.builder_config.channels:
      raise ValueError(f"stir/{self.builder_config.name} expects {self.builder_config.channels} "
                       f"channel(s), the file has {data.num_channels}")
    label = self.info.features["label"]
    if label.num_classes is None:
      label.names = list(data.lbldata)
    elif list(label.names) != list(data.lbldata):
      raise ValueError(f"stir/{self.builder_config.name}: class names {label.names} differ from "
                       f"the file's {data.lbldata}")
    return {split: self._generate_examples(data, index) for split, index in SPLITS.items()}

  def _generate_examples(self, data: stir_file.StirData, split_index: int):
    """Yields (key, example) in npz order: scale index, class, instance."""
    imgs = data.imgs[split_index]
    n, m = data.num_classes, data.num_instances
    for index in range(stir_file.NUM_SCALES):
      for c in range(n):
        for j in range(m):
          image = imgs[index, c, j]
          if image.ndim == 2:
            image = image[..., None]
          key = (index * n + c) * m + j
          yield key, {
              "image": image,
              "label": int(data.lbls[split_index, index, c, j]),
              "scale": np.int32(data.scls[split_index, index, c, j]),
              "position": data.psts[split_index, index, c, j].astype(np.int32),
              "instance": np.int32(j),
          }
