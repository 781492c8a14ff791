"""STIR variants of any TFDS dataset: ``tfds:NAME`` (classification) and ``tfds-boxes:NAME``.

``tfds:NAME`` (e.g. ``tfds:cifar10``, ``tfds:imagenet_resized/32x32``): the digit recipe without
the digit-specific blur and contrast (`recipes.digit_image` with ``contrast=False``): the source
image (centre-cropped to a square when it is not one) is resized to s x s by the same order-3
spline, rounded to uint8, and pasted at a seeded position; colour is kept. Per class, the train
and valid instances are the first m and the next m of the class's ``train`` images after a seeded
shuffle; the test instances are the first m of its ``test`` images (``validation`` when the
dataset has no test split). Positions are drawn as in mnist (class, size, split, instance).

``tfds-boxes:NAME`` (e.g. ``tfds-boxes:coco/2017``, ``tfds-boxes:voc/2012``): the crop recipe of
aerial on a detection dataset whose examples have ``image`` and ``objects`` with ``bbox``
(normalised ymin, xmin, ymax, xmax) and ``label``: objects whose longer side is at least 64 pixels
and under a quarter of the photo's width and height (crowd boxes skipped), classes with at least
3m of them, the 3m largest dealt 0::3 / 1::3 / 2::3, each photo scaled by s / max(w, h). Objects
come from the ``train`` split and, when the dataset has one, ``validation``.

Both read images lazily: a first pass reads labels (and, for boxes, photo sizes from the encoded
headers) without decoding pixels; a second pass decodes only the images that are used.
"""
from __future__ import annotations

import io
import os
from typing import Any, Union

import numpy as np

from stir_jax import _optional
from stir_jax.data import crops
from stir_jax.data import recipes
from stir_jax.data import stir_file
from stir_jax.data import tf_cpu

PathLike = Union[str, os.PathLike]
GenerationError = recipes.GenerationError
DEFAULT_CLASSIFICATION_INSTANCES = 50
DEFAULT_BOX_INSTANCES = 25


def _tfds():
  tfds = tf_cpu.tensorflow_datasets()  # TensorFlow's GPUs hidden
  return tfds


def _builder(name: str, data_dir: PathLike | None):
  tfds = _tfds()
  try:
    builder = tfds.builder(name, data_dir=data_dir)
  except Exception as e:  # pylint: disable=broad-except  # DatasetNotFoundError, bad config, ...
    raise GenerationError(f"unknown TFDS dataset {name!r}: {str(e).splitlines()[0][:200]}"
                          ) from None
  return builder


def _load(name: str, split: str, data_dir: PathLike | None, decoders=None):
  """tfds.load in file order (prepares the dataset first if TFDS can)."""
  tfds = _tfds()
  try:
    return tfds.load(name, split=split, data_dir=data_dir, shuffle_files=False,
                     decoders=decoders)
  except Exception as e:  # pylint: disable=broad-except  # Network, manual download, ...
    raise GenerationError(
        f"TFDS cannot provide {name!r} split {split!r} ({type(e).__name__}: "
        f"{str(e).splitlines()[0][:200] if str(e) else ''})") from None


def _splits(builder) -> list[str]:
  return list(builder.info.splits.keys()) if builder.info.splits else []


def _decode(value: Any) -> np.ndarray:
  """An image feature's value, encoded bytes or already decoded, as (h, w, c) uint8."""
  Image = _optional.require("PIL.Image", extra="data")

  if isinstance(value, (bytes, np.bytes_)):
    with Image.open(io.BytesIO(bytes(value))) as image:
      array = np.asarray(image.convert("RGB") if image.mode not in ("L", "RGB") else image)
  else:
    array = np.asarray(value)
  if array.ndim == 2:
    array = array[..., None]
  return array.astype(np.uint8)


def _square(image: np.ndarray) -> np.ndarray:
  """The central square of an (h, w, c) image."""
  h, w = image.shape[:2]
  side = min(h, w)
  top, left = (h - side) // 2, (w - side) // 2
  return image[top:top + side, left:left + side]


def _image_and_label_keys(builder) -> tuple[str, str]:
  tfds = _tfds()
  features = builder.info.features
  keys = getattr(builder.info, "supervised_keys", None)
  if keys and len(keys) == 2 and all(isinstance(k, str) for k in keys):
    image_key, label_key = keys
  else:
    image_key, label_key = "image", "label"
  if image_key not in features or not isinstance(features[image_key], tfds.features.Image):
    raise GenerationError(f"TFDS dataset {builder.name!r} has no image feature {image_key!r}")
  if label_key not in features or not isinstance(features[label_key], tfds.features.ClassLabel):
    raise GenerationError(f"TFDS dataset {builder.name!r} has no class label {label_key!r}")
  return image_key, label_key


def _class_subset(names: list[str], classes: int | None) -> list[int]:
  if classes is None:
    return list(range(len(names)))
  if not 1 <= classes <= len(names):
    raise GenerationError(f"--classes must be in 1..{len(names)}, got {classes}")
  return list(range(classes))


def _license(builder, name: str) -> str:
  info = builder.info
  text = getattr(info, "license", "") or ""
  home = getattr(info, "homepage", "") or ""
  base = text.strip() or "the licence of the source dataset"
  return " ".join(f"{base}, modified from TFDS {name} {home}".split())


def generate_tfds_classification(name: str, *, instances: int = DEFAULT_CLASSIFICATION_INSTANCES,
                                 seed: int = 42, classes: int | None = None,
                                 data_dir: PathLike | None = None,
                                 progress: bool = True
                                 ) -> tuple[stir_file.StirData, recipes.SkipCounter]:
  """A STIR variant of a TFDS image-classification dataset (see the module docstring).

  Images that fail to decode are skipped (counted in the returned SkipCounter) and replaced by the
  next image of their class in the seeded order.

  Args:
    name: TFDS name, e.g. "cifar10" or "imagenet_resized/32x32".
    instances: m, objects per class and split.
    seed: seeds the per-class shuffles and the positions.
    classes: only the first K classes (label order); None: all.
    data_dir: TFDS data folder.
    progress: tqdm bars on stderr.

  Returns:
    StirData with imgs (3, 48, n, m, 64, 64, C) for colour sources (C = 3), (..., 64, 64) for
    grey, and the count of skipped images.

  Raises:
    GenerationError: unknown dataset, no image/label feature, TFDS cannot load it, or a class with
      too few images (says which and how many).
  """
  tqdm = _optional.require("tqdm", extra="data").tqdm

  tfds = _tfds()
  if not progress:
    tfds.disable_progress_bar()
  if instances < 1:
    raise GenerationError(f"--instances must be positive, got {instances}")
  builder = _builder(name, data_dir)
  image_key, label_key = _image_and_label_keys(builder)
  names = list(builder.info.features[label_key].names)
  wanted = _class_subset(names, classes)
  splits = _splits(builder)
  test_split = "test" if not splits or "test" in splits else (
      "validation" if "validation" in splits else None)
  if test_split is None:
    raise GenerationError(f"TFDS dataset {name!r} has no test or validation split ({splits})")

  def labels_of(split: str) -> np.ndarray:
    ds = _load(name, split, data_dir, decoders={image_key: tfds.decode.SkipDecoding()})
    ds = ds.map(lambda ex: ex[label_key])
    return np.fromiter(tfds.as_numpy(ds), dtype=np.int64)

  def images_of(split: str, indices: set[int]) -> dict[int, np.ndarray | None]:
    """Decoded images by index (None for one that fails to decode)."""
    ds = _load(name, split, data_dir, decoders={image_key: tfds.decode.SkipDecoding()})
    ds = ds.map(lambda ex: ex[image_key])
    found = {}
    for index, value in enumerate(tqdm(tfds.as_numpy(ds), desc=f"{name} {split}", unit="image",
                                       disable=not progress, leave=False)):
      if index in indices:
        try:
          found[index] = _square(_decode(value))
        except crops.DECODE_ERRORS as e:
          found[index] = None
          skipped.add(f"{split}[{index}]", f"{type(e).__name__}: {e}")
    return found

  def pick(split: str, count: int) -> tuple[dict[int, np.ndarray], dict[int, np.ndarray]]:
    """Seeded per-class picks of decodable images; undecodable ones are dropped and replaced."""
    labels = labels_of(split)
    images: dict[int, np.ndarray | None] = {}
    while True:
      picks = recipes.pick_per_class(labels, wanted, count, seed, what=f"{name} {split} images")
      missing = {int(i) for p in picks.values() for i in p} - set(images)
      images.update(images_of(split, missing))
      bad = [i for i, image in images.items() if image is None]
      if not any(images[int(i)] is None for p in picks.values() for i in p):
        return picks, images
      labels = labels.copy()
      labels[bad] = -1  # Out of every class: the next pick replaces them.

  skipped = recipes.SkipCounter("image(s) failed to decode and were skipped")
  train, train_images = pick("train", 2 * instances)
  test, test_images = pick(test_split, instances)
  chosen = [[[train_images[int(i)] for i in train[c][:instances]] for c in wanted],
            [[train_images[int(i)] for i in train[c][instances:]] for c in wanted],
            [[test_images[int(i)] for i in test[c]] for c in wanted]]
  channels = chosen[0][0][0].shape[-1]
  n = len(wanted)
  out = recipes.empty_arrays(n, instances, channels)
  rng = np.random.RandomState(seed)
  with tqdm(total=n * stir_file.NUM_SCALES, desc=name, unit="size", disable=not progress) as bar:
    for label in range(n):
      for index in range(stir_file.NUM_SCALES):
        s = stir_file.scale_of_index(index)
        for split in range(stir_file.NUM_SPLITS):
          for j in range(instances):
            x, y = rng.randint(0, stir_file.IMAGE_SIZE - s + 1, 2)
            source = chosen[split][label][j]
            if source.shape[-1] != channels:  # A stray grey image in a colour dataset.
              source = np.broadcast_to(source[..., :1], source.shape[:2] + (channels,))
            image = recipes.digit_image(source, s, x, y, contrast=False)
            out["imgs"][split, index, label, j] = image[..., 0] if channels == 1 else image
            out["psts"][split, index, label, j] = (x, y)
        bar.update(1)
  metadata = recipes.make_metadata(
      f"Scaled and Translated Image Recognition (STIR) tfds:{name}",
      f"{n} classes of TFDS {name}, {instances} images per class and split, rescaled to sizes "
      "between 17x17 and 64x64 pixels at a random position inside the 64x64 image (numpy "
      f"RandomState seed {seed}). Generated by stir_jax with the STIR mnist recipe without blur "
      "and contrast.", _license(builder, name))
  return recipes.as_stir(out, metadata, [names[c] for c in wanted]), skipped


def generate_tfds_boxes(name: str, *, instances: int = DEFAULT_BOX_INSTANCES, seed: int = 42,
                        classes: int | None = None, data_dir: PathLike | None = None,
                        min_side: int = 64, progress: bool = True, log=crops.stderr_log
                        ) -> tuple[stir_file.StirData, recipes.SkipCounter]:
  """A STIR variant of a TFDS detection dataset by the crop recipe (see the module docstring).

  Args:
    name: TFDS name, e.g. "coco/2017".
    instances: m.
    seed: seeds the window offsets.
    classes: only objects of the first K classes (label order); None: all.
    data_dir: TFDS data folder.
    min_side: the smallest longer side of an object (64: objects are only ever shrunk).
    progress: tqdm bars on stderr.
    log: receives informational lines.

  Returns:
    The dataset and the count of photos skipped as undecodable.

  Raises:
    GenerationError: unknown dataset or features, no qualifying class, or a class left with too
      few decodable photos.
  """
  Image = _optional.require("PIL.Image", extra="data")
  tqdm = _optional.require("tqdm", extra="data").tqdm

  tfds = _tfds()
  if not progress:
    tfds.disable_progress_bar()
  builder = _builder(name, data_dir)
  features = builder.info.features
  if "image" not in features or "objects" not in features:
    raise GenerationError(f"TFDS dataset {name!r} has no 'image' and 'objects' features")
  objects = features["objects"]
  inner = getattr(objects, "feature", objects)
  if "bbox" not in inner or "label" not in inner:
    raise GenerationError(f"TFDS dataset {name!r}: objects need 'bbox' and 'label'")
  names = list(inner["label"].names)
  wanted = set(_class_subset(names, classes))
  known = _splits(builder)
  splits = ["train"] + (["validation"] if "validation" in known else [])
  skip = {"image": tfds.decode.SkipDecoding()}

  candidates = []
  skipped = recipes.SkipCounter("photo(s) failed to decode and were skipped")
  for split in splits:
    ds = _load(name, split, data_dir, decoders=skip)
    for index, ex in enumerate(tqdm(tfds.as_numpy(ds), desc=f"{name} {split} boxes",
                                    unit="photo", disable=not progress, leave=False)):
      value = ex["image"]
      try:
        if isinstance(value, (bytes, np.bytes_)):
          with Image.open(io.BytesIO(bytes(value))) as image:
            width, height = image.size
        else:
          height, width = np.asarray(value).shape[:2]
      except crops.DECODE_ERRORS as e:
        skipped.add(f"{split}[{index}]", f"{type(e).__name__}: {e}")
        continue
      objs = ex["objects"]
      crowd = objs.get("is_crowd", np.zeros(len(objs["label"]), bool))
      for k, (bbox, label) in enumerate(zip(objs["bbox"], objs["label"])):
        if int(label) not in wanted or bool(crowd[k]):
          continue
        ymin, xmin, ymax, xmax = (float(v) for v in bbox)
        # Normalised float32 coordinates: round to 1/1000 pixel so that whole-pixel boxes stay
        # whole (64.00 px, not 63.99998) for the size rules.
        box = recipes.Box(*(round(v, 3) for v in (xmin * width, ymin * height, xmax * width,
                                                   ymax * height)))
        side = max(box.width, box.height)
        if side >= min_side and width / side > 4 and height / side > 4:
          candidates.append(crops.Candidate(label=names[int(label)], image=(split, index),
                                            box=box, size=side, key=f"{split}/{index:09d}/{k:04d}"))
  groups = crops.group_by_class(candidates)
  # Keep label order, not name order, for TFDS classes.
  order = {n: i for i, n in enumerate(names)}
  groups = dict(sorted(groups.items(), key=lambda kv: order[kv[0]]))
  # Second pass: the encoded photos of each qualifying class's largest objects (with slack for
  # photos that fail to decode).
  slack = 3 * instances + max(3, (3 * instances) // 5)
  needed = {c.image for members in groups.values() if len(members) >= 3 * instances
            for c in members[:slack]}
  encoded: dict[Any, Any] = {}
  for split in splits:
    indices = {i for s, i in needed if s == split}
    if not indices:
      continue
    ds = _load(name, split, data_dir, decoders=skip).map(lambda ex: ex["image"])
    for index, value in enumerate(tfds.as_numpy(ds)):
      if index in indices:
        encoded[(split, index)] = value

  def open_photo(key):
    if key not in encoded:
      raise KeyError(f"{key} was not read (raise the slack)")
    value = encoded[key]
    if isinstance(value, (bytes, np.bytes_)):
      image = Image.open(io.BytesIO(bytes(value)))
      image.load()
      return image
    array = np.asarray(value, np.uint8)
    return Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array)

  open_photo = crops.photo_cache(open_photo)
  load = lambda c: open_photo(c.image)
  groups = {k: v[:slack] for k, v in groups.items()}
  chosen = crops.choose_objects(groups, instances, load, skipped, log=log)
  metadata = recipes.make_metadata(
      f"Scaled and Translated Image Recognition (STIR) tfds-boxes:{name}",
      f"{len(chosen)} object classes of TFDS {name}, {instances} objects per class and split, "
      "cropped at sizes between 17x17 and 64x64 pixels (longer side) at a random position inside "
      f"the 64x64 window (numpy RandomState seed {seed}). Generated by stir_jax with the STIR "
      "aerial crop recipe.", _license(builder, name))
  data = crops.generate_crops(chosen, instances, load, keep_aspect=True, seed=seed,
                              metadata=metadata, progress=progress, desc=name)
  return data, skipped
