"""Shared test fixtures: the reference fixtures folder and fresh PRNG keys.

Process-wide settings live here, as in an entry point (importing stir_jax sets none): the CPU
compiler flag of `stir_jax.xla_flags.apply()` (without it the convolutions run several times slower
on recent jaxlib) before JAX starts its backend, and quiet TensorFlow for the data tests.
"""
import os
import pathlib

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

from stir_jax import xla_flags  # pylint: disable=g-import-not-at-top

xla_flags.apply()

import jax  # pylint: disable=g-import-not-at-top
import numpy as np
import pytest

jax.config.update("jax_debug_nans", True)

REPO = pathlib.Path(__file__).resolve().parents[1]
FIXTURES = REPO.parent / "shared" / "fixtures"


@pytest.fixture(scope="session")
def fixtures_dir() -> pathlib.Path:
  """The authors' PyTorch outputs (../shared/fixtures); a missing folder is an error, not a skip."""
  if not FIXTURES.is_dir():
    raise FileNotFoundError(f"reference fixtures not found at {FIXTURES}")
  return FIXTURES


@pytest.fixture
def load_fixture(fixtures_dir):
  def load(name: str) -> dict:
    with np.load(fixtures_dir / f"{name}.npz") as f:
      return {k: f[k] for k in f.files}
  return load


@pytest.fixture
def rng():
  """A fresh PRNG key per test."""
  return jax.random.PRNGKey(0)
