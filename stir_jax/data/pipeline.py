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

Several processes (hosts): ``batch_size`` is the *global* batch. The global batches are the same
for any number of processes: every process orders the whole selection alike (shuffled with the
same ``seed``, reshuffled every epoch, i.e. every new iterator) and cuts it into global batches;
process p of P yields examples [p * B / P, (p + 1) * B / P) of each (an error if P does not divide
the batch). With ``pad_remainder=True`` (what training and evaluation use) the last global batch is
padded and carries a mask, so every example is counted exactly once over all processes and every
process runs the same number of steps. (`shard` and `read_tfds_share` still read one process's
contiguous share of a split, the ``tfds.even_splits`` rule, for code that wants only that.)

Sources: a StirData, the path of a STIR npz, or a `TfdsSource` (the ``stir`` TFDS builder of
`stir_jax.data.tfds_stir`, whose records keep the npz order, so both give the same examples).

TensorFlow only runs the input pipeline, on the CPU: its GPUs are hidden once, before first use.

Example:

  >>> ds = make_dataset("data/emoji.npz", "train", 2, batch_size=16, shuffle=True, seed=0)
  >>> for batch in iterate(ds):  # One epoch of numpy batches; iterate again for the next.
  ...   logits = model.apply(params, batch["image"])
  >>> # On each of several hosts: its half of every global batch of 32.
  >>> ds = make_dataset(TfdsSource("stir/emoji"), "test", 2, batch_size=32, shuffle=False,
  ...                   process_index=jax.process_index(), process_count=jax.process_count(),
  ...                   pad_remainder=True)
"""
from __future__ import annotations

import dataclasses
import math
import os
import pathlib
import time
from typing import Any, Iterable, Iterator, NamedTuple, Sequence, Union

import numpy as np

from stir_jax.data import stir_file
from stir_jax.data import tf_cpu

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


def share_range(total: int, process_index: int, process_count: int, pad: bool) -> tuple[int, int]:
  """[start, end) of a process's contiguous share of ``total`` examples, and the share's length.

  Without ``pad`` every share has ``total // process_count`` examples (the last ``total mod P``
  are left out); with ``pad`` every share has ``ceil(total / P)`` slots and the shares of the last
  processes may run past ``total`` (those slots are padding). Returns (start, length).
  """
  if not 0 <= process_index < process_count:
    raise ValueError(f"process_index {process_index} is outside 0..{process_count - 1}")
  length = math.ceil(total / process_count) if pad else total // process_count
  return process_index * length, length


def shard(arrays: dict[str, np.ndarray], process_index: int = 0, process_count: int = 1,
          pad: bool = False) -> dict[str, np.ndarray]:
  """This process's disjoint, equally large, contiguous share of the examples.

  Process p takes examples [p * L, (p + 1) * L) - the ``tfds.even_splits`` rule, so the npz and
  the TFDS paths give the same shares. Without ``pad``, L = N // P (the last N mod P examples are
  left out). With ``pad``, L = ceil(N / P), nothing is left out: the shares are filled up with zero
  examples and a boolean "mask" (False for padding) is added.
  """
  n = len(arrays["label"])
  start, length = share_range(n, process_index, process_count, pad)
  if process_count == 1 and not pad:
    return dict(arrays)
  result = {k: v[start:start + length] for k, v in arrays.items()}
  if pad:
    have = len(result["label"])
    result = {k: np.concatenate([v, np.zeros((length - have,) + v.shape[1:], v.dtype)])
              for k, v in result.items()}
    result["mask"] = np.arange(length) < have
  return result


def num_examples(data_or_path: stir_file.StirData | PathLike, split: str,
                 scenario: ScenarioLike | None = None, *, scales: ScalesLike | None = None,
                 process_count: int = 1, pad: bool = False) -> int:
  """Examples one process sees per epoch: len(scales) * n * m, shared over ``process_count``."""
  data = _as_data(data_or_path)
  total = len(_resolve_scales(scenario, split, scales)) * data.num_classes * data.num_instances
  return share_range(total, 0, process_count, pad)[1]


@dataclasses.dataclass(frozen=True)
class TfdsSource:
  """A STIR dataset prepared by TFDS (see `stir_jax.data.tfds_stir`).

  An unprepared dataset is prepared on first use; with several processes, prepare it once
  beforehand (``tfds.builder(name, data_dir=...).download_and_prepare(...)``) so that the
  processes do not all write it at the same time.

  Attributes:
    name: the TFDS name, e.g. "stir/emoji".
    data_dir: the TFDS data folder (None: TFDS's default).
    download_and_prepare_kwargs: passed to tfds.load (e.g. a DownloadConfig with manual_dir).
  """
  name: str = "stir/emoji"
  data_dir: str | None = None
  download_and_prepare_kwargs: dict | None = None


Source = Union[stir_file.StirData, PathLike, TfdsSource]
_TFDS_SPLITS = {"train": "train", "valid": "validation", "test": "test", "test_all": "test"}


def _tfds_builder(source: TfdsSource):
  tfds = tf_cpu.tensorflow_datasets()
  from stir_jax.data import tfds_stir  # pylint: disable=g-import-not-at-top,unused-import
  builder = tfds.builder(source.name, data_dir=source.data_dir)
  if not builder.is_prepared():
    builder.download_and_prepare(**(source.download_and_prepare_kwargs or {}))
  return builder


def read_tfds_share(source: TfdsSource, split: str, scales: Sequence[int], *,
                    process_index: int = 0, process_count: int = 1,
                    pad: bool = False) -> dict[str, np.ndarray]:
  """Reads only this process's share of a split at the given sizes from the TFDS ``stir`` data.

  The ``stir`` builder writes each split in npz order (scale index, class, instance), so size s
  holds records [(64 - s) * n * m, (65 - s) * n * m). The selection (sizes ascending, as `select`
  orders it) is a list of such ranges; this process's contiguous share of it (`share_range`) is
  turned into TFDS slices ("test[1536:1600]+test[1500:1536]") and only those records are read.

  Returns:
    The same arrays as ``shard(select(...), ...)`` on the npz: image (L, 64, 64, C) uint8, label,
    scale (L,) int32, position (L, 2) int32 [, mask (L,) bool].
  """
  tfds = tf_cpu.tensorflow_datasets()
  builder = _tfds_builder(source)
  tfds_split = _TFDS_SPLITS[split]
  total = builder.info.splits[tfds_split].num_examples
  per_scale = total // stir_file.NUM_SCALES
  ranges = [(stir_file.index_of_scale(s) * per_scale, (stir_file.index_of_scale(s) + 1) * per_scale)
            for s in sorted(scales)]
  n = per_scale * len(ranges)
  start, length = share_range(n, process_index, process_count, pad)
  end = min(start + length, n)
  pieces, offset = [], 0
  for low, high in ranges:
    a, b = max(start, offset), min(end, offset + high - low)
    if a < b:
      pieces.append((low + a - offset, low + b - offset))
    offset += high - low
  merged = []
  for low, high in pieces:  # Join touching slices: fewer, larger reads.
    if merged and merged[-1][1] == low:
      merged[-1] = (merged[-1][0], high)
    else:
      merged.append((low, high))
  channels = builder.info.features["image"].shape[-1]
  if merged:
    spec = "+".join(f"{tfds_split}[{low}:{high}]" for low, high in merged)
    ds = builder.as_dataset(split=spec, batch_size=-1, shuffle_files=False)
    arrays = tfds.as_numpy(ds)
    arrays = {"image": arrays["image"].reshape((-1, 64, 64, channels)),
              "label": arrays["label"].astype(np.int32),
              "scale": arrays["scale"].astype(np.int32),
              "position": arrays["position"].astype(np.int32)}
  else:
    arrays = {"image": np.zeros((0, 64, 64, channels), np.uint8),
              "label": np.zeros((0,), np.int32), "scale": np.zeros((0,), np.int32),
              "position": np.zeros((0, 2), np.int32)}
  if pad:
    have = len(arrays["label"])
    arrays = {k: np.concatenate([v, np.zeros((length - have,) + v.shape[1:], v.dtype)])
              for k, v in arrays.items()}
    arrays["mask"] = np.arange(length) < have
  return arrays


def host_arrays(source: Source, split: str, scenario: ScenarioLike | None = None, *,
                scales: ScalesLike | None = None, process_index: int = 0, process_count: int = 1,
                pad: bool = False) -> dict[str, np.ndarray]:
  """This process's share of a split as numpy arrays (see `shard` and `read_tfds_share`)."""
  _check_split(split)
  sizes = _resolve_scales(scenario, split, scales)
  if isinstance(source, TfdsSource):
    return read_tfds_share(source, split, sizes, process_index=process_index,
                           process_count=process_count, pad=pad)
  return shard(select(_as_data(source), split, sizes), process_index, process_count, pad=pad)


def local_batch_size(batch_size: int, process_count: int) -> int:
  """The per-process batch: global ``batch_size`` / ``process_count`` (which must divide it)."""
  if batch_size < 1:
    raise ValueError(f"batch_size must be positive, got {batch_size}")
  if process_count < 1:
    raise ValueError(f"process_count must be positive, got {process_count}")
  if batch_size % process_count:
    raise ValueError(f"the global batch_size {batch_size} is not divisible by process_count "
                     f"{process_count}")
  return batch_size // process_count


def _check_batching(batch_size: int, process_index: int, process_count: int,
                    drop_remainder: bool, pad_remainder: bool) -> int:
  """ValueError for an impossible batching; returns the per-process batch."""
  local = local_batch_size(batch_size, process_count)
  if not 0 <= process_index < process_count:
    raise ValueError(f"process_index {process_index} is outside 0..{process_count - 1}")
  if process_count > 1 and not (drop_remainder or pad_remainder):
    raise ValueError("with several processes the last global batch must be dropped "
                     "(drop_remainder) or padded (pad_remainder)")
  return local


def make_dataset(data_or_path: Source, split: str, scenario: ScenarioLike | None = None, *,
                 batch_size: int, shuffle: bool, seed: int = 0, drop_remainder: bool = False,
                 scales: ScalesLike | None = None, process_index: int = 0,
                 process_count: int = 1, pad_remainder: bool = False,
                 order: np.ndarray | None = None):
  """A tf.data pipeline of this process's part of every global batch of one split.

  The global batches do not depend on the number of processes: every process orders the whole
  selection the same way (shuffled with ``seed``), cuts it into global batches of ``batch_size``,
  and process p takes examples [p * b, (p + 1) * b) of each, b = batch_size // process_count. So 1,
  2 or 4 hosts train on the same sequence of global batches.

  Args:
    data_or_path: a StirData, the path of a STIR file, or a `TfdsSource`.
    split: "train", "valid", "test" or "test_all".
    scenario: 1..4 or a scenario name; picks the sizes unless ``scales`` is given.
    batch_size: the global batch; this process yields ``batch_size // process_count`` examples
      per batch (ValueError when not divisible).
    shuffle: reshuffle every epoch (every new iterator) with a sequence fixed by ``seed``.
    seed: the shuffle seed (the same on every process); the same seed gives the same epochs.
    order: instead of shuffling, one fixed order of the selection's examples (a permutation of
      0..N-1) for every epoch (e.g. `paper_order`).
    drop_remainder: drop the last partial global batch.
    scales: explicit sizes ("33-48", "17-32,49-64", an int or a list) instead of the scenario's.
    process_index: this process's index (jax.process_index()).
    process_count: number of processes (jax.process_count()).
    pad_remainder: pad the last global batch to full size, adding a "mask" (False on padding) so
      shapes stay static and every example is counted exactly once over all processes. With
      several processes one of drop_remainder and pad_remainder is needed (equal shapes).

  Returns:
    A tf.data.Dataset of dicts: image (b, 64, 64, C) float32 in [0, 1], label (b,) int32,
    scale (b,) int32, position (b, 2) int32 [, mask (b,) bool].
  """
  _check_batching(batch_size, process_index, process_count, drop_remainder, pad_remainder)
  arrays = host_arrays(data_or_path, split, scenario, scales=scales)
  return batch_arrays(arrays, batch_size=batch_size, shuffle=shuffle, seed=seed,
                      drop_remainder=drop_remainder, process_index=process_index,
                      process_count=process_count, pad_remainder=pad_remainder, order=order)


def paper_order(n: int) -> np.ndarray:
  """The training order of Altstidl et al.'s code: their data module permutes the selection
  (sizes ascending, then class) once with ``numpy.random.RandomState(42).shuffle`` and iterates it
  in that order every epoch, for every seed (a DataLoader without shuffle)."""
  order = np.arange(n)
  np.random.RandomState(42).shuffle(order)
  return order


def batch_arrays(arrays: dict[str, np.ndarray], *, batch_size: int, shuffle: bool, seed: int = 0,
                 drop_remainder: bool = False, process_index: int = 0, process_count: int = 1,
                 pad_remainder: bool = False, order: np.ndarray | None = None):
  """The tf.data pipeline of `make_dataset` over any examples held as numpy arrays.

  ``arrays`` maps keys to arrays with one leading example axis: "image" (N, H, W, C) uint8 and
  "label" (N,) at least; every key is gathered per batch, the image as float32 / 255. The global
  batches, their shuffling, the process shares and the padding mask are `make_dataset`'s (which
  calls this with a STIR selection; `stir_jax.data.mnist_scale` with its splits).
  """
  local = _check_batching(batch_size, process_index, process_count, drop_remainder, pad_remainder)
  tf = tf_cpu.tensorflow()
  n = len(arrays["label"])
  tensors = {k: tf.constant(v) for k, v in arrays.items()}

  if order is not None:
    order = np.asarray(order)
    if shuffle:
      raise ValueError("give either shuffle or a fixed order, not both")
    if order.shape != (n,) or not np.array_equal(np.sort(order), np.arange(n)):
      raise ValueError(f"order must be a permutation of the {n} examples' indices")
    ds = tf.data.Dataset.from_tensor_slices(order.astype(np.int64))
  else:
    ds = tf.data.Dataset.range(n)
  if shuffle:
    ds = ds.shuffle(max(n, 1), seed=int(seed), reshuffle_each_iteration=True)
  ds = ds.batch(batch_size, drop_remainder=drop_remainder and not pad_remainder)
  first = process_index * local

  def gather(indices):  # one global batch of indices -> this process's part of it
    count = tf.shape(indices)[0]
    if pad_remainder:
      indices = tf.pad(indices, [[0, batch_size - count]])
      valid = tf.range(batch_size) < count
      indices, valid = indices[first:first + local], valid[first:first + local]
    else:
      indices = indices[first:first + local]
    batch = {k: tf.gather(v, indices) for k, v in tensors.items()}
    batch["image"] = tf.cast(batch["image"], tf.float32) / 255.0
    if pad_remainder:
      batch["mask"] = valid
    return batch

  ds = ds.map(gather, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  return ds.prefetch(tf.data.AUTOTUNE)


def benchmark(data_or_path: Source, split: str = "train", scenario: ScenarioLike | None = 4, *,
              batch_size: int = 16, seconds: float = 5.0, shuffle: bool = True,
              scales: ScalesLike | None = None) -> dict[str, Any]:
  """Examples per second that `make_dataset` delivers as numpy batches on this machine.

  Epochs are repeated until ``seconds`` have passed (after the first batch, which is timed
  separately: it includes loading the file and building the tensors). For scale: the fastest
  consumer in the paper, the standard CNN on mnist Mid2Rest, trained an epoch (8,000 examples)
  in 1.2 s on their GPU, about 6,600 examples per second.

  Returns:
    examples_per_second, batches_per_second, examples, batches, epochs, seconds,
    first_batch_seconds, batch_size, split, scales.
  """
  if seconds <= 0:
    raise ValueError(f"seconds must be positive, got {seconds}")
  tf_cpu.tensorflow()  # Importing TensorFlow is not part of the pipeline's cost.
  start = time.perf_counter()
  ds = make_dataset(data_or_path, split, scenario, batch_size=batch_size, shuffle=shuffle,
                    seed=0, scales=scales)
  examples = batches = epochs = 0
  first = None
  t0 = None
  while True:
    epochs += 1
    for batch in iterate(ds):
      if first is None:
        first = time.perf_counter() - start
        t0 = time.perf_counter()
        continue
      examples += len(batch["label"])
      batches += 1
      if time.perf_counter() - t0 >= seconds:
        break
    else:
      if t0 is not None and time.perf_counter() - t0 < seconds:
        continue
    break
  elapsed = time.perf_counter() - t0 if t0 is not None else 0.0
  sizes = _resolve_scales(scenario, split, scales)
  return {
      "split": split,
      "scales": f"{min(sizes)}..{max(sizes)} ({len(sizes)} sizes)",
      "batch_size": batch_size,
      "epochs": epochs,
      "batches": batches,
      "examples": examples,
      "seconds": elapsed,
      "first_batch_seconds": first or 0.0,
      "examples_per_second": examples / elapsed if elapsed > 0 else 0.0,
      "batches_per_second": batches / elapsed if elapsed > 0 else 0.0,
  }


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
    "Scenario", "SCENARIOS", "SPLITS", "TfdsSource", "get_scenario", "parse_scales", "scales_for",
    "select", "share_range", "shard", "host_arrays", "read_tfds_share", "local_batch_size",
    "num_examples", "make_dataset", "batch_arrays", "benchmark", "iterate", "ensure_emoji")
