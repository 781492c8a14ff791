"""The data a run reads: its STIR file, and this process's part of every global batch."""
from __future__ import annotations

import pathlib
from typing import Iterator, Sequence

import jax
import numpy as np

from stir_jax.data import pipeline, stir_file
from stir_jax.train.rundir import RunError


def load_dataset(config) -> stir_file.StirData:
  """Loads config.dataset, generating the emoji domain first when that file is missing."""
  path = pathlib.Path(config.dataset)
  if not path.exists() and path.name.startswith("emoji"):
    if jax.process_index() == 0:
      print(f"{path} is missing: generating STIR-emoji (once)")
      pipeline.ensure_emoji(path)
    from stir_jax.train import distributed  # pylint: disable=g-import-not-at-top
    distributed.barrier("emoji generated")
  try:
    return stir_file.load_stir(path)
  except stir_file.StirFileError as e:
    raise RunError(str(e)) from None


def epoch_seed(seed: int, epoch: int) -> int:
  """The shuffle seed of one epoch of one seed's run."""
  return int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0])


def split_batches(data, split: str, scenario: int, *, batch_size: int, seed: int | None = None,
                  scales: Sequence[int] | None = None) -> Iterator[dict]:
  """This process's part of every global batch of batch_size examples (see
  `pipeline.make_dataset`: the global batches do not depend on the number of processes). Every
  batch is padded to full size with a 'mask' of real examples, so shapes stay static (no
  recompilation for a short last batch) and every process runs the same number of steps. `seed`
  shuffles (training); None keeps the selection order (evaluation)."""
  ds = pipeline.make_dataset(data, split, scenario, batch_size=batch_size,
                             shuffle=seed is not None, seed=seed or 0, scales=scales,
                             process_index=jax.process_index(),
                             process_count=jax.process_count(), pad_remainder=True)
  for batch in pipeline.iterate(ds):
    yield {k: batch[k] for k in ("image", "label", "scale", "mask")}
