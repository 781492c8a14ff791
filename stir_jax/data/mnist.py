"""The STIR mnist and fashion_mnist domains: 28 x 28 digits (or garments) by the digit recipe.

Recipe (DESIGN.md §1; the published generator, re-expressed): for each class, instance, size s and
split, the source image is resized to s x s (`recipes.resize_spline`: skimage's order-3 spline
resize, which the authors used), pasted into a black 64 x 64 image at a seeded (x, y), blurred with
sigma = 7/8 * s/28, passed through 2/pi * atan(0.02 * (x - 128)) and min-max scaled to 0..255.

Instances: each class's training images are shuffled with ``RandomState(seed)``; the first m are
the train instances and the next m the valid instances; the test instances are the first m of the
class's shuffled *test* images. An instance is one source image shown at all 48 sizes (as the
emoji, trafficsign and aerial domains are). This differs from the published mnist file, whose
generator took a different digit per size and reused training digits for two of the splits; the
published file also has one image per class and size (no instance axis, which `load_stir`
accepts).

Positions: one ``RandomState(seed)`` draws ``x, y = randint(0, 64 - s + 1, 2)`` for class, then
size 64..17, then split, then instance - the emoji order with the instance loop innermost.

Sources: the four IDX files of the MNIST layout (``train-images-idx3-ubyte[.gz]``,
``train-labels-idx1-ubyte[.gz]``, ``t10k-images-idx3-ubyte[.gz]``, ``t10k-labels-idx1-ubyte[.gz]``;
gzipped or not) in a folder, or the TFDS datasets ``mnist`` / ``fashion_mnist``.

Example:

  >>> source = read_idx_folder("/usr/share/datasets/fashion-mnist")
  >>> data = generate_digits(source, FASHION_MNIST_NAMES, domain="fashion_mnist")
  >>> data.imgs.shape
  (3, 48, 10, 50, 64, 64)
"""
from __future__ import annotations

import dataclasses
import gzip
import os
import pathlib
import struct
import zlib
from typing import Sequence, Union

import numpy as np

from stir_jax import _optional
from stir_jax.data import recipes
from stir_jax.data import stir_file
from stir_jax.data import tf_cpu

PathLike = Union[str, os.PathLike]
GenerationError = recipes.GenerationError

MNIST_NAMES = tuple(str(i) for i in range(10))
FASHION_MNIST_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                       "Sneaker", "Bag", "Ankle boot")
DEFAULT_INSTANCES = 50
# Debian's dataset-fashion-mnist package installs the IDX files here.
DEBIAN_FASHION_MNIST = pathlib.Path("/usr/share/datasets/fashion-mnist")
IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
               0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}

DOMAINS = {
    "mnist": dict(
        names=MNIST_NAMES, title="Scaled and Translated Image Recognition (STIR) MNIST",
        what="10 handwritten digits",
        license="CC BY-SA 3.0, modified from MNIST by Y. LeCun, C. Cortes and C. Burges - "
                "http://yann.lecun.com/exdb/mnist/"),
    "fashion_mnist": dict(
        names=FASHION_MNIST_NAMES,
        title="Scaled and Translated Image Recognition (STIR) Fashion-MNIST",
        what="10 Zalando article classes",
        license="MIT, modified from Fashion-MNIST by Zalando SE (H. Xiao, K. Rasul, R. Vollgraf) "
                "- https://github.com/zalandoresearch/fashion-mnist"),
}


@dataclasses.dataclass
class DigitSource:
  """Grey source images and labels.

  Attributes:
    train_images: (N, 28, 28) uint8.
    train_labels: (N,) integers.
    test_images: (M, 28, 28) uint8.
    test_labels: (M,) integers.
    origin: where the data came from (for messages and metadata).
  """
  train_images: np.ndarray
  train_labels: np.ndarray
  test_images: np.ndarray
  test_labels: np.ndarray
  origin: str = ""


def read_idx(path: PathLike) -> np.ndarray:
  """Reads one IDX file (gzipped or not).

  Raises:
    GenerationError: the file is missing, truncated or not IDX.
  """
  path = pathlib.Path(path)
  try:
    with open(path, "rb") as f:
      head = f.read(2)
    opener = gzip.open if head == b"\x1f\x8b" else open
    with opener(path, "rb") as f:
      raw = f.read()
  except FileNotFoundError:
    raise GenerationError(f"{path}: file not found") from None
  except (OSError, EOFError, zlib.error) as e:
    raise GenerationError(f"{path}: cannot read (truncated or damaged archive?): {e}") from None
  if len(raw) < 4 or raw[:2] != b"\x00\x00" or raw[2] not in _IDX_DTYPES:
    raise GenerationError(f"{path}: not an IDX file (bad magic number)")
  dtype, ndim = np.dtype(_IDX_DTYPES[raw[2]]), raw[3]
  header = 4 + 4 * ndim
  if len(raw) < header:
    raise GenerationError(f"{path}: truncated IDX header")
  shape = struct.unpack(f">{ndim}I", raw[4:header])
  expected = int(np.prod(shape)) * dtype.itemsize
  if len(raw) - header != expected:
    raise GenerationError(
        f"{path}: IDX data has {len(raw) - header} bytes, its header {shape} needs {expected} "
        "(truncated file?)")
  return np.frombuffer(raw, dtype, offset=header).reshape(shape)


def find_idx(folder: PathLike, stem: str) -> pathlib.Path:
  """``folder/stem.gz`` or ``folder/stem`` (also the ``stem.idx3-ubyte`` spelling some mirrors use)."""
  folder = pathlib.Path(folder)
  names = [stem + ".gz", stem, stem.replace("-idx", ".idx") + ".gz", stem.replace("-idx", ".idx")]
  for name in names:
    if (folder / name).is_file():
      return folder / name
  raise GenerationError(f"{folder}: no {stem}.gz or {stem} (the MNIST IDX layout is expected)")


def read_idx_folder(folder: PathLike) -> DigitSource:
  """Reads the four MNIST-layout IDX files from ``folder``.

  Raises:
    GenerationError: a missing or empty folder, a missing, truncated or inconsistent file.
  """
  folder = pathlib.Path(folder)
  if not folder.exists():
    raise GenerationError(f"--source {folder} does not exist")
  if not folder.is_dir():
    raise GenerationError(f"--source {folder} is not a folder of IDX files")
  if not any(folder.iterdir()):
    raise GenerationError(f"--source {folder} is empty (expected the four MNIST IDX files)")
  arrays = {k: read_idx(find_idx(folder, stem)) for k, stem in IDX_FILES.items()}
  for split in ("train", "test"):
    images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
      raise GenerationError(
          f"{folder}: {split} images {images.shape} and labels {labels.shape} do not match")
  return DigitSource(arrays["train_images"], arrays["train_labels"], arrays["test_images"],
                     arrays["test_labels"], origin=str(folder))


def load_tfds_digits(name: str, data_dir: PathLike | None = None) -> DigitSource:
  """Reads TFDS ``mnist`` or ``fashion_mnist`` (downloading it if TFDS can).

  Raises:
    GenerationError: TFDS cannot provide the dataset (e.g. no network, not prepared).
  """
  tfds = tf_cpu.tensorflow_datasets()  # TensorFlow's GPUs hidden

  try:
    splits = tfds.as_numpy(tfds.load(name, split=["train", "test"], batch_size=-1,
                                     data_dir=data_dir, as_supervised=True))
  except Exception as e:  # pylint: disable=broad-except  # Network, missing data, ...
    raise GenerationError(
        f"TFDS cannot provide {name!r} ({type(e).__name__}: {str(e)[:200]}); pass --source with "
        "the four MNIST-layout IDX files instead") from None
  (train_x, train_y), (test_x, test_y) = splits
  squeeze = lambda x: x[..., 0] if x.ndim == 4 else x
  return DigitSource(squeeze(train_x), train_y, squeeze(test_x), test_y, origin=f"tfds:{name}")


def generate_digits(source: DigitSource, names: Sequence[str], *, domain: str = "mnist",
                    instances: int = DEFAULT_INSTANCES, seed: int = 42,
                    progress: bool = True) -> stir_file.StirData:
  """Generates a STIR file from 28 x 28 grey images by the digit recipe.

  Args:
    source: train and test images with labels 0..len(names)-1.
    names: class names, label order.
    domain: "mnist" or "fashion_mnist" (title, description and licence of the metadata).
    instances: m, objects per class and split.
    seed: seeds the per-class shuffles and the positions.
    progress: tqdm bar on stderr.

  Returns:
    StirData with imgs (3, 48, n, m, 64, 64) uint8.

  Raises:
    GenerationError: a class has fewer than 2m training or m test images (says which).
  """
  tqdm = _optional.require("tqdm", extra="data").tqdm

  n = len(names)
  if instances < 1:
    raise GenerationError(f"--instances must be positive, got {instances}")
  train = recipes.pick_per_class(source.train_labels, range(n), 2 * instances, seed,
                                 what=f"training images in {source.origin}")
  test = recipes.pick_per_class(source.test_labels, range(n), instances, seed,
                                what=f"test images in {source.origin}")
  # Per split and class: the m source images (train: first m, valid: next m, test: test images).
  chosen = [[source.train_images[train[c][:instances]] for c in range(n)],
            [source.train_images[train[c][instances:]] for c in range(n)],
            [source.test_images[test[c]] for c in range(n)]]
  out = recipes.empty_arrays(n, instances, channels=1)
  rng = np.random.RandomState(seed)
  with tqdm(total=n * stir_file.NUM_SCALES, desc=domain, unit="size", disable=not progress) as bar:
    for label in range(n):
      for index in range(stir_file.NUM_SCALES):
        s = stir_file.scale_of_index(index)
        for split in range(stir_file.NUM_SPLITS):
          for j in range(instances):
            x, y = rng.randint(0, stir_file.IMAGE_SIZE - s + 1, 2)
            out["imgs"][split, index, label, j] = recipes.digit_image(
                chosen[split][label][j], s, x, y)
            out["psts"][split, index, label, j] = (x, y)
        bar.update(1)
  info = DOMAINS.get(domain, DOMAINS["mnist"])
  metadata = recipes.make_metadata(
      info["title"],
      f"{info['what']} rescaled to sizes between 17x17 and 64x64 pixels at a random position "
      f"inside the 64x64 image, {instances} instances per class, blurred and contrast-curved as "
      f"in STIR mnist (numpy RandomState seed {seed}; source {source.origin}). Regenerated by "
      "stir_jax following the STIR mnist recipe.",
      info["license"])
  return recipes.as_stir(out, metadata, names)
