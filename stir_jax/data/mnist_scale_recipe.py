"""MNIST-scale (Sosnovik, Szmaja, Smeulders, ICLR 2020; after Ghosh & Gupta 2019): generator and npz
file format. Import `stir_jax.data.mnist_scale`, which re-exports all of this and adds the tf.data
input; this module stands below the TFDS builder (`stir_jax.data.tfds_mnist_scale`), which the
input reads from, so that neither imports the other in a circle.

The recipe (ISosnovik/sesn, ``prepare_datasets.py``, ``make_mnist_scale_50k``; the peers README's
"MNIST-scale data recipe"):

* all 70 000 digits, the official train and test sets concatenated (train first);
* a label-stratified split into 12 000 (train + validation) and 50 000 test digits (the other
  8 000 are unused), then the 12 000 split stratified into 10 000 train and 2 000 validation;
* every image rescaled by its own s ~ U(0.3, 1.0) about the image centre, bicubic (PIL), keeping
  the 28 x 28 size with a black border - torchvision's ``RandomAffine(0, scale=(0.3, 1.0),
  resample=BICUBIC)`` of 2019, whose inverse map sends output pixel centre (x, y) (PIL
  coordinates, pixel i covers [i, i + 1)) to ((x - c) / s + c, (y - c) / s + c) with
  c = 28 / 2 + 0.5 = 14.5 (that torchvision's centre; newer ones use 14);
* six realisations, seeds 0..5.

What differs from the published data: the authors drew the splits with scikit-learn's
``train_test_split`` from NumPy's global generator and the scales with Python's ``random`` (in the
torchvision of that time), and checked an MD5 over the written PNGs. Those streams cannot be
replayed without that software, so a realisation here is drawn from one
``numpy.random.default_rng(seed)``: the stratified split of `stratified_split` (largest-remainder
class quotas, random members), then the scales of the train, test and validation images, in the
order the authors wrote them. Same recipe and distribution, different draws: realisation k here
is not the published seed k, and numbers are comparable in distribution only.

File (``np.savez_compressed``, nothing pickled):

=================  ======================  ==================================================
key                shape, dtype            meaning
=================  ======================  ==================================================
<split>_images     (N, 28, 28) uint8       the rescaled digits; split in train, valid, test
<split>_labels     (N,) int32              class index
<split>_scales     (N,) float32            the scale factor s the digit was shrunk by
<split>_sources    (N,) int32              index into the 70 000 source digits (train set
                                           0..59 999, then the test set)
scale_range        (2,) float64            (min, max) of s
seed               () int64                the realisation's seed
metadata           (6, 2) str              title, description, author, license, version, date
lbldata            (n,) str                class names
=================  ======================  ==================================================

Example:

  >>> source = mnist.read_idx_folder("MNIST/raw")
  >>> data = generate_mnist_scale(source, seed=0)
  >>> save_mnist_scale("data/mnist_scale_0.npz", data)
"""
from __future__ import annotations

import dataclasses
import os
import pathlib
import tempfile
from typing import ClassVar, Mapping, Sequence, Union

import numpy as np

from stir_jax import _optional
from stir_jax.data import mnist
from stir_jax.data import recipes
from stir_jax.data import stir_file

PathLike = Union[str, os.PathLike]
GenerationError = recipes.GenerationError
DataFileError = stir_file.StirFileError  # one-line "<path>: <problem>" errors, as for STIR files

IMAGE_SIZE = 28
SPLITS = ("train", "valid", "test")
# Images per split in the benchmark (train, validation, test); the other 8 000 digits are unused.
SIZES = {"train": 10_000, "valid": 2_000, "test": 50_000}
SCALE_RANGE = (0.3, 1.0)
NUM_REALISATIONS = 6  # seeds 0..5
# The benchmark's input normalisation (sesn utils/loaders.py, 'scale_mnist').
MEAN, STD = 0.0607, 0.2161
_FIELDS = ("images", "labels", "scales", "sources")


@dataclasses.dataclass
class MnistScaleData:
  """One MNIST-scale realisation.

  Attributes:
    images, labels, scales, sources: split name -> (N, 28, 28) uint8, (N,) int32, (N,) float32,
      (N,) int32 (see the module docstring's file table).
    scale_range: (min, max) of the scale factors.
    seed: the realisation's seed.
    metadata: title, description, author, license, version, date.
    lbldata: the class names.
  """
  kind: ClassVar[str] = "mnist_scale"  # the registry's model kind that takes it
  images: dict[str, np.ndarray]
  labels: dict[str, np.ndarray]
  scales: dict[str, np.ndarray]
  sources: dict[str, np.ndarray]
  scale_range: tuple[float, float]
  seed: int
  metadata: dict[str, str]
  lbldata: list[str]

  @property
  def num_classes(self) -> int:
    return len(self.lbldata)

  @property
  def num_channels(self) -> int:
    return 1

  @property
  def image_size(self) -> int:
    return IMAGE_SIZE

  def num_examples(self, split: str) -> int:
    return len(self.labels[_check_split(split)])


def _check_split(split: str) -> str:
  if split not in SPLITS:
    raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
  return split


# --- the recipe --------------------------------------------------------------------------------

def apportion(counts: np.ndarray, total: int) -> np.ndarray:
  """Per-class quotas summing to ``total``, proportional to ``counts`` (largest remainder; ties
  go to the lower class index). Every quota is at most its count when total <= sum(counts)."""
  counts = np.asarray(counts, np.int64)
  exact = counts * (total / counts.sum())
  quota = np.floor(exact).astype(np.int64)
  order = np.argsort(-(exact - quota), kind="stable")
  quota[order[:total - int(quota.sum())]] += 1
  return quota


def stratified_split(labels: np.ndarray, sizes: Sequence[int],
                     rng: np.random.Generator) -> list[np.ndarray]:
  """Disjoint label-stratified random subsets of ``range(len(labels))``, one per size.

  Each class's members are permuted once; subset j takes the class's next quota (`apportion` of
  sizes[j] over what is left of each class) and is returned in random order. So every subset has
  the label proportions of the whole to within one example per class.

  Raises:
    GenerationError: the sizes need more examples than there are.
  """
  labels = np.asarray(labels)
  if sum(sizes) > len(labels):
    raise GenerationError(f"the split needs {sum(sizes)} images ({' + '.join(map(str, sizes))}), "
                          f"the source has {len(labels)}")
  classes = np.unique(labels)
  members = [rng.permutation(np.flatnonzero(labels == c)) for c in classes]
  left = np.array([len(m) for m in members])
  taken = np.zeros(len(classes), np.int64)
  parts = []
  for size in sizes:
    quota = apportion(left, size)
    part = np.concatenate([m[t:t + q] for m, t, q in zip(members, taken, quota)])
    parts.append(rng.permutation(part))
    taken += quota
    left -= quota
  return parts


def rescale(image: np.ndarray, scale: float) -> np.ndarray:
  """One digit shrunk by ``scale`` about the centre, bicubic (PIL), same size, black border.

  image: (h, w) uint8 -> (h, w) uint8. The inverse affine map of torchvision's 2019
  ``F.affine(img, 0, (0, 0), scale, 0, resample=BICUBIC, fillcolor=0)``: output pixel centre
  (x, y) samples the input at ((x - cx) / s + cx, (y - cy) / s + cy), with
  (cx, cy) = (w / 2 + 0.5, h / 2 + 0.5).
  """
  Image = _optional.require("PIL.Image", extra="data")

  h, w = image.shape
  cx, cy, inv = w * 0.5 + 0.5, h * 0.5 + 0.5, 1.0 / scale
  matrix = (inv, 0.0, cx - cx * inv, 0.0, inv, cy - cy * inv)
  out = Image.fromarray(np.ascontiguousarray(image, np.uint8), "L").transform(
      (w, h), Image.Transform.AFFINE, matrix, resample=Image.Resampling.BICUBIC, fillcolor=0)
  return np.asarray(out, np.uint8)


def generate_mnist_scale(source: mnist.DigitSource, seed: int = 0, *,
                         sizes: Mapping[str, int] | None = None,
                         scale_range: tuple[float, float] = SCALE_RANGE,
                         names: Sequence[str] = mnist.MNIST_NAMES, domain: str = "mnist",
                         progress: bool = True) -> MnistScaleData:
  """One MNIST-scale realisation from 28 x 28 digits (see the module docstring).

  Args:
    source: the train and test digits with labels 0..len(names)-1 (concatenated train first).
    seed: the realisation (the benchmark uses 0..5).
    sizes: images per split (default `SIZES`: 10 000 / 2 000 / 50 000); smaller ones for tests.
    scale_range: (min, max) of the uniform scale factor.
    names: class names.
    domain: "mnist" or "fashion_mnist": title and licence of the metadata.
    progress: tqdm bar on stderr.

  Raises:
    GenerationError: too few source images, bad sizes or scale range, labels outside the names.
  """
  tqdm = _optional.require("tqdm", extra="data").tqdm

  sizes = dict(SIZES if sizes is None else sizes)
  if set(sizes) != set(SPLITS) or min(sizes.values()) < 1:
    raise GenerationError(f"sizes must give a positive count for each of {', '.join(SPLITS)}, "
                          f"got {sizes}")
  low, high = (float(v) for v in scale_range)
  if not 0.0 < low <= high:
    raise GenerationError(f"the scale range must satisfy 0 < min <= max, got {scale_range}")
  images = np.concatenate([source.train_images, source.test_images])
  labels = np.concatenate([source.train_labels, source.test_labels]).astype(np.int32)
  if images.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE):
    raise GenerationError(f"{source.origin}: images are {images.shape[1:]}, expected 28 x 28")
  if labels.min() < 0 or labels.max() >= len(names):
    raise GenerationError(f"{source.origin}: labels {labels.min()}..{labels.max()} do not fit "
                          f"{len(names)} class names")
  rng = np.random.default_rng(seed)
  train_val, test = stratified_split(
      labels, (sizes["train"] + sizes["valid"], sizes["test"]), rng)
  train, valid = (train_val[i] for i in stratified_split(
      labels[train_val], (sizes["train"], sizes["valid"]), rng))
  chosen = {"train": train, "valid": valid, "test": test}
  out = {f: {} for f in _FIELDS}
  total = sum(sizes.values())
  with tqdm(total=total, desc="mnist-scale", unit="img", disable=not progress,
            mininterval=0.5) as bar:
    for split in ("train", "test", "valid"):  # the authors' order of writing (and drawing)
      index = chosen[split]
      scales = rng.uniform(low, high, len(index))
      rescaled = np.empty((len(index), IMAGE_SIZE, IMAGE_SIZE), np.uint8)
      for j, (i, s) in enumerate(zip(index, scales)):
        rescaled[j] = rescale(images[i], s)
        if j % 1000 == 999:
          bar.update(1000)
      bar.update(len(index) % 1000)
      out["images"][split] = rescaled
      out["labels"][split] = labels[index]
      out["scales"][split] = scales.astype(np.float32)
      out["sources"][split] = index.astype(np.int32)
  info = mnist.DOMAINS.get(domain, mnist.DOMAINS["mnist"])
  what = "Fashion-MNIST" if domain == "fashion_mnist" else "MNIST"
  metadata = recipes.make_metadata(
      f"{what}-scale, realisation {seed}",
      f"{info['what']} from {source.origin or 'an MNIST-layout source'} shrunk by s ~ "
      f"U({low}, {high}) about the centre (bicubic, 28x28, black border); stratified "
      f"{sizes['train']} train / {sizes['valid']} validation / {sizes['test']} test. The MNIST-"
      "scale recipe of Sosnovik et al. (ICLR 2020) drawn with numpy.random.default_rng("
      f"{seed}) by stir_jax; not the published realisation of that seed.",
      info["license"])
  return MnistScaleData(images=out["images"], labels=out["labels"], scales=out["scales"],
                        sources=out["sources"], scale_range=(low, high), seed=int(seed),
                        metadata=metadata, lbldata=[str(n) for n in names])


# --- the file ----------------------------------------------------------------------------------

def check(data: MnistScaleData, path: PathLike | None = None) -> None:
  """Checks shapes, dtypes, label and scale ranges and disjoint sources; DataFileError naming
  ``path`` on the first problem."""
  seen = []
  low, high = data.scale_range
  for split in SPLITS:
    images, labels = data.images.get(split), data.labels.get(split)
    scales, sources = data.scales.get(split), data.sources.get(split)
    if any(a is None for a in (images, labels, scales, sources)):
      raise DataFileError(path, f"split {split} is missing")
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (28, 28):
      raise DataFileError(path, f"{split}_images is {images.shape} {images.dtype}, expected "
                          "(N, 28, 28) uint8")
    n = len(images)
    for key, array in (("labels", labels), ("scales", scales), ("sources", sources)):
      if array.shape != (n,):
        raise DataFileError(path, f"{split}_{key} has shape {array.shape}, expected ({n},)")
    if n and (labels.min() < 0 or labels.max() >= data.num_classes):
      raise DataFileError(path, f"{split}_labels hold {labels.min()}..{labels.max()}, outside "
                          f"the {data.num_classes} classes")
    if n and (scales.min() < np.float32(low) or scales.max() > np.float32(high)):
      raise DataFileError(path, f"{split}_scales span {scales.min()}..{scales.max()}, outside "
                          f"the scale range {low}..{high}")
    seen.append(sources)
  sources = np.concatenate(seen)
  if len(np.unique(sources)) != len(sources):
    raise DataFileError(path, "a source digit appears twice (the splits must be disjoint)")


def save_mnist_scale(path: PathLike, data: MnistScaleData) -> pathlib.Path:
  """Checks ``data`` and writes it atomically (a temporary file moved into place): a failure
  never leaves a partial file or damages an existing one."""
  path = pathlib.Path(path)
  check(data, path)
  arrays = {f"{split}_{field}": getattr(data, field)[split] for split in SPLITS
            for field in _FIELDS}
  arrays.update(scale_range=np.asarray(data.scale_range, np.float64),
                seed=np.asarray(data.seed, np.int64),
                metadata=np.array([[str(k), str(v)] for k, v in data.metadata.items()], dtype=str),
                lbldata=np.array(list(data.lbldata), dtype=str))
  fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp",
                             dir=path.parent if str(path.parent) else ".")
  try:
    with os.fdopen(fd, "wb") as f:
      np.savez_compressed(f, **arrays)
      f.flush()
      os.fsync(f.fileno())
    os.chmod(tmp, 0o666 & ~stir_file._umask())  # pylint: disable=protected-access
    os.replace(tmp, path)
  except BaseException:
    try:
      os.unlink(tmp)
    except OSError:
      pass
    raise
  return path


def is_mnist_scale_file(path: PathLike) -> bool:
  """Whether ``path`` is an npz archive with the MNIST-scale keys (False for STIR files and for
  anything unreadable: `load_mnist_scale` or `stir_file.load_stir` then says what is wrong)."""
  try:
    with np.load(path, allow_pickle=False) as archive:
      return isinstance(archive, np.lib.npyio.NpzFile) and "train_images" in archive.files
  except Exception:  # pylint: disable=broad-except  # Missing, a folder, not an npz, ...
    return False


def load_mnist_scale(path: PathLike) -> MnistScaleData:
  """Loads and checks an MNIST-scale file.

  Raises:
    DataFileError: a missing, unreadable or inconsistent file (one-line message).
  """
  path = pathlib.Path(path)
  if not path.is_file():
    raise DataFileError(path, "is a directory" if path.is_dir() else "file not found")
  keys = [f"{s}_{f}" for s in SPLITS for f in _FIELDS] + ["scale_range", "seed", "metadata",
                                                           "lbldata"]
  try:
    with np.load(path, allow_pickle=False) as archive:
      missing = [k for k in keys if k not in archive.files]
      if missing:
        raise DataFileError(path, f"not an MNIST-scale file: missing key(s) {', '.join(missing)}")
      arrays = {k: archive[k] for k in keys}
  except DataFileError:
    raise
  except Exception as e:  # pylint: disable=broad-except  # BadZipFile, zlib.error, ...
    raise DataFileError(path, f"cannot read as an .npz archive: {type(e).__name__}: {e}") from None
  metadata = arrays["metadata"]
  data = MnistScaleData(
      **{f: {s: arrays[f"{s}_{f}"] for s in SPLITS} for f in _FIELDS},
      scale_range=tuple(float(v) for v in arrays["scale_range"]), seed=int(arrays["seed"]),
      metadata=dict(zip((str(k) for k in metadata[:, 0]), (str(v) for v in metadata[:, 1]))),
      lbldata=[str(n) for n in arrays["lbldata"]])
  check(data, path)
  return data


def summarize(data: MnistScaleData) -> str:
  """A few human-readable lines: title, splits, label counts, scale range."""
  lines = [f"title: {data.metadata.get('title', '?')}",
           f"version: {data.metadata.get('version', '?')} ({data.metadata.get('date', '?')})",
           f"classes: {data.num_classes} ({', '.join(data.lbldata[:10])})",
           f"seed: {data.seed}, scale range {data.scale_range[0]}..{data.scale_range[1]}"]
  for split in SPLITS:
    counts = np.bincount(data.labels[split], minlength=data.num_classes)
    s = data.scales[split]
    lines.append(f"{split}: {len(s)} images 28x28, per class {counts.min()}..{counts.max()}, "
                 f"s {s.min():.3f}..{s.max():.3f}")
  return "\n".join(lines)
