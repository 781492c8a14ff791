"""The STIR input pipeline: evaluation scenarios, scale selection and tf.data batches.

A scenario picks the object sizes of each split (DESIGN.md §1):

====  ===========  =====================  ======================
id    name         train and valid        test
====  ===========  =====================  ======================
1     Small2Large  17..32                 33..64
2     Mid2Rest     33..48                 17..32 and 49..64
3     Large2Small  49..64                 17..48
4     All2All      17..64                 17..64
====  ===========  =====================  ======================

and the split "test_all" is the test split at all 48 sizes (per-scale generalisation).

Batches are dicts of
  image: (B, 64, 64, C) float32 in [0, 1] (uint8 / 255, no other normalisation),
  label: (B,) int32, scale: (B,) int32 object size s, position: (B, 2) int32 (x, y) top-left,
and, with ``pad_remainder=True``, mask: (B,) bool (False marks padding).

TensorFlow only runs the input pipeline, on the CPU: its GPUs are hidden once, before first use.

Example:

  >>> ds = make_dataset("data/emoji.npz", "train", 2, batch_size=16, shuffle=True, seed=0)
  >>> for batch in iterate(ds):  # One epoch of numpy batches; iterate again for the next.
  ...   logits = model.apply(params, batch["image"])
"""
from __future__ import annotations

import functools
import math
import os
import pathlib
from typing import Any, Iterable, Iterator, NamedTuple, Sequence, Union

import numpy as np

from stir_jax.data import stir_file

PathLike = Union[str, os.PathLike]
DEFAULT_EMOJI_PATH = pathlib.Path("data") / "emoji.npz"
SPLITS = ("train", "valid", "test", "test_all")
ALL_SCALES = tuple(range(stir_file.MIN_SCALE, stir_file.MAX_SCALE + 1))


class Scenario(NamedTuple):
  """An evaluation scenario: its name and the object sizes of train/valid and of test."""
  name: str
  train_scales: tuple[int, ...]
  test_scales: tuple[int, ...]


SCENARIOS: dict[int, Scenario] = {
    1: Scenario("Small2Large", tuple(range(17, 33)), tuple(range(33, 65))),
    2: Scenario("Mid2Rest", tuple(range(33, 49)), tuple(range(17, 33)) + tuple(range(49, 65))),
    3: Scenario("Large2Small", tuple(range(49, 65)), tuple(range(17, 49))),
    4: Scenario("All2All", ALL_SCALES, ALL_SCALES),
}
_ABBREVIATIONS = {"s2l": 1, "m2r": 2, "l2s": 3, "a2a": 4}

ScenarioLike = Union[int, str, Scenario]
ScalesLike = Union[str, int, Iterable[int]]


def get_scenario(scenario: ScenarioLike) -> Scenario:
  """Resolves 1..4, "2", "Mid2Rest"/"mid2rest", "M2R" or a Scenario to a Scenario."""
  if isinstance(scenario, Scenario):
    return scenario
  key: Any = scenario
  if isinstance(key, str):
    text = key.strip().lower()
    if text.isdigit():
      key = int(text)
    elif text in _ABBREVIATIONS:
      key = _ABBREVIATIONS[text]
    else:
      by_name = {s.name.lower(): i for i, s in SCENARIOS.items()}
      key = by_name.get(text, key)
  if isinstance(key, (int, np.integer)) and int(key) in SCENARIOS:
    return SCENARIOS[int(key)]
  names = ", ".join(f"{i} ({s.name})" for i, s in SCENARIOS.items())
  raise ValueError(f"unknown scenario {scenario!r}; expected one of {names}")


def _check_split(split: str) -> None:
  if split not in SPLITS:
    raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")


def _check_scales(scales: Iterable[int]) -> list[int]:
  """Sorted unique sizes, each in 17..64."""
  result = sorted({int(s) for s in scales})
  if not result:
    raise ValueError("no scales selected")
  bad = [s for s in result if not stir_file.MIN_SCALE <= s <= stir_file.MAX_SCALE]
  if bad:
    raise ValueError(f"scales must be in 17..64, got {bad}")
  return result


def parse_scales(spec: str) -> list[int]:
  """Parses "33-48", "17-32,49-64", "64" or "17,20-22" into sorted unique sizes in 17..64."""
  scales = []
  for part in spec.replace(" ", "").split(","):
    if not part:
      continue
    try:
      if "-" in part:
        low, high = (int(v) for v in part.split("-"))
        if low > high:
          raise ValueError
        scales.extend(range(low, high + 1))
      else:
        scales.append(int(part))
    except ValueError:
      raise ValueError(
          f"cannot parse scales {spec!r}: expected e.g. '33-48' or '17-32,49-64'") from None
  return _check_scales(scales)


def scales_for(scenario: ScenarioLike | None, split: str) -> list[int]:
  """The object sizes a split uses in a scenario (ascending).

  Args:
    scenario: the evaluation scenario (ignored, may be None, for "test_all").
    split: "train" and "valid" use the training sizes, "test" the test sizes and "test_all" all 48.
  """
  _check_split(split)
  if split == "test_all":
    return list(ALL_SCALES)
  if scenario is None:
    raise ValueError(f"split {split!r} needs a scenario")
  sc = get_scenario(scenario)
  return list(sc.train_scales if split in ("train", "valid") else sc.test_scales)


def _resolve_scales(scenario: ScenarioLike | None, split: str,
                    scales: ScalesLike | None) -> list[int]:
  """Explicit ``scales`` (a spec string, one size or sizes) win over the scenario's."""
  if scales is None:
    return scales_for(scenario, split)
  if isinstance(scales, str):
    return parse_scales(scales)
  if isinstance(scales, (int, np.integer)):
    return _check_scales([int(scales)])
  return _check_scales(scales)


def _as_data(data_or_path: stir_file.StirData | PathLike) -> stir_file.StirData:
  if isinstance(data_or_path, stir_file.StirData):
    return data_or_path
  return stir_file.load_stir(data_or_path)


def select(data: stir_file.StirData, split: str, scales: ScalesLike) -> dict[str, np.ndarray]:
  """Flattens one split at the given sizes into examples (order: size, class, instance).

  Args:
    data: the dataset.
    split: "train", "valid", "test" or "test_all" (the test split).
    scales: object sizes (or a spec string such as "33-48").

  Returns:
    image: (N, 64, 64, C) uint8, label: (N,) int32, scale: (N,) int32, position: (N, 2) int32,
    with N = len(scales) * n * m.
  """
  _check_split(split)
  split_index = stir_file.SPLITS.index("test" if split == "test_all" else split)
  sizes = _resolve_scales(None, split, scales)
  indices = [stir_file.index_of_scale(s) for s in sizes]
  size = stir_file.IMAGE_SIZE
  images = data.imgs[split_index][indices]  # (k, n, m, 64, 64[, 3])
  return {
      "image": images.reshape((-1, size, size, data.num_channels)),
      "label": data.lbls[split_index][indices].reshape(-1).astype(np.int32),
      "scale": data.scls[split_index][indices].reshape(-1).astype(np.int32),
      "position": data.psts[split_index][indices].reshape((-1, 2)).astype(np.int32),
  }


def shard(arrays: dict[str, np.ndarray], process_index: int = 0, process_count: int = 1,
          pad: bool = False) -> dict[str, np.ndarray]:
  """This process's disjoint, equal share of the examples.

  Without ``pad`` the examples are truncated to a multiple of ``process_count`` and process p takes
  ``examples[p::process_count]``. With ``pad`` nothing is dropped: zero examples are appended up to
  a multiple of ``process_count`` and a boolean "mask" (False for padding) is added.
  """
  if not 0 <= process_index < process_count:
    raise ValueError(f"process_index {process_index} is outside 0..{process_count - 1}")
  n = len(arrays["label"])
  arrays = dict(arrays)
  if pad:
    total = math.ceil(n / process_count) * process_count
    mask = np.arange(total) < n
    arrays = {k: np.concatenate([v, np.zeros((total - n,) + v.shape[1:], v.dtype)])
              for k, v in arrays.items()}
    arrays["mask"] = mask
  else:
    total = n - n % process_count
  if process_count == 1 and total == n:
    return arrays
  return {k: v[:total][process_index::process_count] for k, v in arrays.items()}


def num_examples(data_or_path: stir_file.StirData | PathLike, split: str,
                 scenario: ScenarioLike | None = None, *, scales: ScalesLike | None = None,
                 process_count: int = 1, pad: bool = False) -> int:
  """Examples one process sees per epoch: len(scales) * n * m, shared over ``process_count``."""
  data = _as_data(data_or_path)
  total = len(_resolve_scales(scenario, split, scales)) * data.num_classes * data.num_instances
  return math.ceil(total / process_count) if pad else total // process_count


@functools.lru_cache(maxsize=None)
def _tf():
  """Imports TensorFlow once, hiding its GPUs (it only feeds JAX from the CPU)."""
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  try:
    tf.config.set_visible_devices([], "GPU")
  except (RuntimeError, ValueError):  # Already initialised elsewhere; leave it.
    pass
  return tf


def make_dataset(data_or_path: stir_file.StirData | PathLike, split: str,
                 scenario: ScenarioLike | None = None, *, batch_size: int, shuffle: bool,
                 seed: int = 0, drop_remainder: bool = False, scales: ScalesLike | None = None,
                 process_index: int = 0, process_count: int = 1,
                 pad_remainder: bool = False):
  """A tf.data pipeline of batches of one split.

  Args:
    data_or_path: a StirData or the path of a STIR file.
    split: "train", "valid", "test" or "test_all".
    scenario: 1..4 or a scenario name; picks the sizes unless ``scales`` is given.
    batch_size: examples per batch (per process).
    shuffle: reshuffle every epoch (every new iterator) with a sequence fixed by ``seed``.
    seed: the shuffle seed; two datasets built with the same seed give the same epochs.
    drop_remainder: drop the last partial batch.
    scales: explicit sizes ("33-48", "17-32,49-64", an int or a list) instead of the scenario's.
    process_index: this process's index (jax.process_index()).
    process_count: number of processes (jax.process_count()); see `shard`.
    pad_remainder: for evaluation: keep every example (padding the shards) and pad the last batch
      to ``batch_size``, adding a "mask" (False on padding) so shapes stay static.

  Returns:
    A tf.data.Dataset of dicts: image (B, 64, 64, C) float32 in [0, 1], label (B,) int32,
    scale (B,) int32, position (B, 2) int32 [, mask (B,) bool].
  """
  if batch_size < 1:
    raise ValueError(f"batch_size must be positive, got {batch_size}")
  tf = _tf()
  data = _as_data(data_or_path)
  arrays = select(data, split, _resolve_scales(scenario, split, scales))
  arrays = shard(arrays, process_index, process_count, pad=pad_remainder)
  if pad_remainder and "mask" not in arrays:
    arrays["mask"] = np.ones(len(arrays["label"]), bool)
  n = len(arrays["label"])
  tensors = {k: tf.constant(v) for k, v in arrays.items()}

  ds = tf.data.Dataset.range(n)
  if shuffle:
    ds = ds.shuffle(max(n, 1), seed=seed, reshuffle_each_iteration=True)
  ds = ds.batch(batch_size, drop_remainder=drop_remainder and not pad_remainder)

  def gather(indices):
    valid = None
    if pad_remainder:
      count = tf.shape(indices)[0]
      valid = tf.range(batch_size) < count
      indices = tf.pad(indices, [[0, batch_size - count]])
    batch = {
        "image": tf.cast(tf.gather(tensors["image"], indices), tf.float32) / 255.0,
        "label": tf.gather(tensors["label"], indices),
        "scale": tf.gather(tensors["scale"], indices),
        "position": tf.gather(tensors["position"], indices),
    }
    if pad_remainder:
      batch["mask"] = tf.logical_and(tf.gather(tensors["mask"], indices), valid)
    return batch

  ds = ds.map(gather, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  return ds.prefetch(tf.data.AUTOTUNE)


def iterate(ds) -> Iterator[dict[str, np.ndarray]]:
  """One pass over ``ds`` as dicts of numpy arrays."""
  return ds.as_numpy_iterator()


def ensure_emoji(path: PathLike = DEFAULT_EMOJI_PATH, *, seed: int = 42,
                 progress: bool = True) -> pathlib.Path:
  """Returns ``path``, generating the full emoji file there first if it does not exist."""
  path = pathlib.Path(path)
  if path.exists():
    return path
  from stir_jax.data import emoji  # pylint: disable=g-import-not-at-top
  data = emoji.generate_emoji(emoji.EMOJI_NAMES, seed=seed, progress=progress)
  path.parent.mkdir(parents=True, exist_ok=True)
  return stir_file.save_stir(path, data)


__all__: Sequence[str] = (
    "Scenario", "SCENARIOS", "SPLITS", "get_scenario", "parse_scales", "scales_for", "select",
    "shard", "num_examples", "make_dataset", "iterate", "ensure_emoji")
