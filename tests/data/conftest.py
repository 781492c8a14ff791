"""Shared data-test fixtures: a small emoji dataset generated once per session."""
import pathlib

import numpy as np
import pytest

from stir_jax.data import emoji
from stir_jax.data import stir_file

NUM_TEST_ICONS = 3


@pytest.fixture(scope="session")
def emoji3() -> stir_file.StirData:
  """The first 3 emoji classes (seed 42), rendered once for all data tests."""
  return emoji.generate_emoji(emoji.EMOJI_NAMES[:NUM_TEST_ICONS], seed=42, progress=False)


def take_classes(data: stir_file.StirData, count: int) -> stir_file.StirData:
  """The first ``count`` classes of ``data`` (equal to generating that many icons)."""
  return stir_file.StirData(
      imgs=data.imgs[:, :, :count].copy(), lbls=data.lbls[:, :, :count].copy(),
      scls=data.scls[:, :, :count].copy(), psts=data.psts[:, :, :count].copy(),
      metadata=dict(data.metadata), lbldata=list(data.lbldata[:count]))


@pytest.fixture(scope="session")
def emoji2_path(emoji3, tmp_path_factory) -> pathlib.Path:
  """A valid 2-icon STIR file on disk."""
  path = tmp_path_factory.mktemp("stir") / "emoji2.npz"
  stir_file.save_stir(path, take_classes(emoji3, 2))
  return path


def synthetic(num_classes: int, num_instances: int = 1, channels: int = 1,
              seed: int = 0) -> stir_file.StirData:
  """A cheap valid StirData: a filled s x s square per image, labels = class index."""
  rng = np.random.RandomState(seed)
  grid = (3, 48, num_classes, num_instances)
  shape = grid + (64, 64) + ((channels,) if channels > 1 else ())
  imgs = np.zeros(shape, np.uint8)
  lbls = np.broadcast_to(np.arange(num_classes).reshape(1, 1, -1, 1), grid).astype(np.int32)
  scls = np.broadcast_to(np.arange(64, 16, -1).reshape(1, -1, 1, 1), grid).astype(np.int32)
  psts = np.zeros(grid + (2,), np.int32)
  for index in np.ndindex(*grid):
    s = scls[index]
    x, y = rng.randint(0, 64 - s + 1, 2)
    psts[index] = (x, y)
    imgs[index][y:y + s, x:x + s] = 1 + lbls[index]
  return stir_file.StirData(
      imgs=imgs, lbls=lbls, scls=scls, psts=psts,
      metadata={k: k for k in stir_file.METADATA_KEYS},
      lbldata=[f"class{i}" for i in range(num_classes)])
