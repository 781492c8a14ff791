"""Optional dependencies: which extra brings each, and one line when it is missing.

The core install (`pip install stir_jax`) brings what the layers, the models and
`python -m stir_jax.bench device` need. Data generation and tf.data input need the extra ``data``,
training and evaluation ``train`` (docs/install.md). Code that needs an optional package asks for it
here, so that a user without it reads one line naming the extra instead of a traceback:

>>> tf = require("tensorflow", extra="data")
MissingExtraError: tensorflow is missing: pip install 'stir_jax[data]'
"""
from __future__ import annotations

import importlib
import importlib.util
import types

# The import names each extra's commands need (an extra's packages are in pyproject.toml).
EXTRAS = {
    "data": ("tensorflow", "tensorflow_datasets", "cairosvg", "PIL", "tqdm", "matplotlib"),
    "train": ("tensorflow", "tensorflow_datasets", "cairosvg", "PIL", "tqdm", "matplotlib",
              "orbax.checkpoint", "ml_collections", "absl", "tensorboard"),
}


class MissingExtraError(ImportError):
  """An optional package is not installed; the message is one line naming the extra."""


_DISTRIBUTIONS = {"PIL": "pillow"}  # where the import name is not the package's name


def message(module: str, extra: str) -> str:
  top = module.split(".")[0]
  return f"{_DISTRIBUTIONS.get(top, top)} is missing: pip install 'stir_jax[{extra}]'"


def require(module: str, extra: str) -> types.ModuleType:
  """Imports `module`, or raises MissingExtraError naming `extra` where it is not installed."""
  try:
    return importlib.import_module(module)
  except ModuleNotFoundError as e:
    # Only the module itself (or a parent package) being absent is the user's missing extra; an
    # installed package that fails to import one of its own dependencies keeps its own error.
    if e.name and (module == e.name or module.startswith(e.name + ".")):
      raise MissingExtraError(message(module, extra)) from e
    raise


def missing(extra: str) -> list[str]:
  """The import names of `extra` that are not installed (looked up, not imported)."""
  absent = []
  for module in EXTRAS[extra]:
    try:
      found = importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # a parent package is absent
      found = False
    if not found:
      absent.append(module)
  return absent


def check(extra: str) -> None:
  """Raises MissingExtraError for the first package of `extra` that is not installed."""
  absent = missing(extra)
  if absent:
    raise MissingExtraError(message(absent[0], extra))
