"""Shared test fixtures: the reference fixtures folder and fresh PRNG keys.

Process-wide settings live here, as in an entry point (importing stir_jax sets none): tcmalloc
where installed (`stir_jax.runtime.use_tcmalloc`, see `pytest_configure`), the CPU compiler flag of
`stir_jax.runtime.apply_xla_flags()` (without it the convolutions run several times slower
on recent jaxlib) before JAX starts its backend, and quiet TensorFlow for the data tests.
"""
import os
import pathlib
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

from stir_jax import runtime  # pylint: disable=g-import-not-at-top

runtime.apply_xla_flags()

import jax  # pylint: disable=g-import-not-at-top
import numpy as np
import pytest

jax.config.update("jax_debug_nans", True)

REPO = pathlib.Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures"


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist starts its workers
def pytest_configure(config):
  """pytest itself (not a program that calls pytest.main) reruns under tcmalloc where installed,
  as the entry points do, and its xdist workers inherit it: 22% less time for the SiConv pooling
  tests of tests/models/test_impls.py, measured side by side. STIR_JAX_TCMALLOC=0: no."""
  program = os.path.basename(os.path.dirname(sys.argv[0])) + os.path.basename(sys.argv[0])
  if "pytest" in program:
    capture = config.pluginmanager.getplugin("capturemanager")
    # the new process writes to the terminal, not to this one's capture files
    runtime.use_tcmalloc(before_exec=capture.stop_global_capturing if capture else None)


@pytest.fixture(scope="session")
def fixtures_dir() -> pathlib.Path:
  """The authors' PyTorch outputs (tests/fixtures); a missing folder is an error, not a skip."""
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
