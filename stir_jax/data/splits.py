"""The data a run reads, and this process's part of every global batch.

config.dataset is a STIR file (`stir_jax.data.stir_file`; splits train/valid/test at the scenario's
object sizes) or an MNIST-scale file (`stir_jax.data.mnist_scale`; its own train/valid/test splits,
no scenario); which one is read from the file. The functions below hide the difference from the
engine: image shape, epoch length, batches, the test pass and its results.
"""
from __future__ import annotations

import pathlib
from typing import Iterator, Sequence, Union

import jax
import numpy as np

from stir_jax import metrics
from stir_jax.data import mnist_scale, pipeline, stir_file
from stir_jax.errors import RunError

Data = Union[stir_file.StirData, mnist_scale.MnistScaleData]


def load_dataset(config) -> Data:
  """Loads config.dataset, generating the emoji domain first when that file is missing."""
  path = pathlib.Path(config.dataset)
  if not path.exists() and path.name.startswith("emoji"):
    if jax.process_index() == 0:
      print(f"{path} is missing: generating STIR-emoji (once)")
      pipeline.ensure_emoji(path)
    from stir_jax import distributed  # pylint: disable=g-import-not-at-top
    distributed.barrier("emoji generated")
  try:
    if mnist_scale.is_mnist_scale_file(path):
      return mnist_scale.load_mnist_scale(path)
    return stir_file.load_stir(path)
  except stir_file.StirFileError as e:
    raise RunError(str(e)) from None


def is_mnist_scale(data: Data) -> bool:
  return isinstance(data, mnist_scale.MnistScaleData)


def image_size(data: Data) -> int:
  """The side of the (square) images: 64 for STIR, 28 for MNIST-scale."""
  return data.image_size if is_mnist_scale(data) else stir_file.IMAGE_SIZE


def num_train_examples(data: Data, scenario: int) -> int:
  """Training examples per epoch (all processes together)."""
  if is_mnist_scale(data):
    return data.num_examples("train")
  return pipeline.num_examples(data, "train", scenario)


def epoch_seed(seed: int, epoch: int) -> int:
  """The shuffle seed of one epoch of one seed's run."""
  return int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0])


TRAIN_ORDERS = ("reshuffle", "paper")


def _field(config, name: str):
  """config.name, or its default (`stir_jax.experiment.DEFAULTS`) for a config that predates it."""
  from stir_jax import experiment  # pylint: disable=g-import-not-at-top
  return config.get(name, experiment.DEFAULTS[name])


def train_order(config, data: Data) -> np.ndarray | None:
  """The fixed training order config.train_order asks for, or None to reshuffle every epoch.

  "reshuffle" (the default): every epoch a new order, drawn from (seed, epoch) (`epoch_seed`).
  "paper": the order of the authors' code (`pipeline.paper_order`), the same every epoch and for
  every seed.
  """
  name = _field(config, "train_order")
  if name not in TRAIN_ORDERS:
    raise RunError(f"unknown train_order {name!r}; valid: {', '.join(TRAIN_ORDERS)}")
  if name == "reshuffle":
    return None
  return pipeline.paper_order(num_train_examples(data, config.scenario))


def split_batches(data: Data, split: str, scenario: int, *, batch_size: int,
                  seed: int | None = None, scales: Sequence[int] | None = None,
                  order: np.ndarray | None = None) -> Iterator[dict]:
  """This process's part of every global batch of batch_size examples (see
  `pipeline.make_dataset`: the global batches do not depend on the number of processes). Every
  batch is padded to full size with a 'mask' of real examples, so shapes stay static (no
  recompilation for a short last batch) and every process runs the same number of steps. `seed`
  shuffles (training); None keeps the selection order (evaluation), or the fixed `order` (a
  permutation of the split's examples, see `train_order`). STIR batches carry the object
  size ("scale", for per-size metrics); MNIST-scale batches do not (scenario and scales unused)."""
  common = dict(batch_size=batch_size, shuffle=seed is not None, seed=seed or 0,
                process_index=jax.process_index(), process_count=jax.process_count(),
                pad_remainder=True, order=order)
  if is_mnist_scale(data):
    ds, keys = mnist_scale.make_dataset(data, split, **common), ("image", "label", "mask")
  else:
    ds = pipeline.make_dataset(data, split, scenario, scales=scales, **common)
    keys = ("image", "label", "scale", "mask")
  for batch in pipeline.iterate(ds):
    yield {k: batch[k] for k in keys}


def test_batches(data: Data, scenario: int, batch_size: int) -> Iterator[dict]:
  """The final test pass: STIR's test split at all 48 sizes, or MNIST-scale's test split."""
  return split_batches(data, "test", scenario, batch_size=batch_size,
                       scales=None if is_mnist_scale(data) else metrics.SCALES)


def test_results(data: Data, scenario: int, total: dict) -> dict:
  """loss, accuracy, count of a test pass's sums; for STIR on the scenario's test sizes, with the
  accuracy per size (per_scale) besides."""
  if is_mnist_scale(data):
    return metrics.finalize(total)
  restricted = metrics.restrict(total, pipeline.scales_for(scenario, "test"))
  return {**metrics.finalize(restricted), "per_scale": metrics.finalize(total)["per_scale"]}


def input_norm(config) -> tuple[float, float] | None:
  """(config.input_mean, config.input_std), or None when they leave the images as they are."""
  mean, std = float(_field(config, "input_mean")), float(_field(config, "input_std"))
  if std <= 0:
    raise RunError(f"input_std must be positive, got {std}")
  return None if (mean, std) == (0.0, 1.0) else (mean, std)
