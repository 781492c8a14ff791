"""Helpers for the command-line entry points: one-line errors, exit status 2, no tracebacks.

absl and ml_collections report bad flags with tracebacks or several lines; the entry points route
flag definition, parsing and config loading through here so every user error is one line.
"""
from __future__ import annotations

import pathlib
import sys
from typing import Callable, NoReturn

from absl import flags
from absl import logging
from ml_collections import config_flags

from stir_jax.data.stir_file import StirFileError
from stir_jax.rundir import RunError

flags.DEFINE_string("coordinator_address", None,
                    "Several processes: host:port of process 0 (or JAX_COORDINATOR_ADDRESS).")
flags.DEFINE_integer("num_processes", None, "Several processes: how many (or JAX_NUM_PROCESSES).")
flags.DEFINE_integer("process_id", None, "Several processes: this one's index (or JAX_PROCESS_ID).")


def fail(message: str) -> NoReturn:
  print(f"error: {message}", file=sys.stderr)
  sys.exit(2)


def define_config_flag(default: str) -> None:
  """--config=FILE with --config.<field>=value overrides (an unknown field is one-line error)."""
  try:
    config_flags.DEFINE_config_file("config", default, "Config file (get_config()).",
                                    lock_config=True)
  except (AttributeError, KeyError, ValueError, TypeError) as e:
    # config_flags resolves --config.<field> overrides while defining the flag.
    fail(f"bad --config override: {str(e).strip(chr(34) + chr(39))} is not a field of the config")


def parse_flags(argv: list[str]) -> list[str]:
  """app.run's flags_parser: one line for a flag error instead of absl's usage text."""
  try:
    rest = flags.FLAGS(argv)
  except flags.Error as e:
    fail(str(e))
  logging.set_verbosity(logging.WARNING)  # no absl INFO lines (e.g. JAX's backend probing)
  return rest


def start() -> None:
  """What the entry points do before touching a device: quiet TensorFlow, the CPU compiler flag
  (`stir_jax.runtime.apply_xla_flags`), and JAX's distributed runtime when this is one of several
  processes (`stir_jax.distributed.initialize`: the flags above, the environment, or
  SLURM / TPU pod / Open MPI auto-detection). A bad setting is a one-line error."""
  import os  # pylint: disable=g-import-not-at-top
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
  from stir_jax import runtime  # pylint: disable=g-import-not-at-top
  from stir_jax import distributed  # pylint: disable=g-import-not-at-top
  runtime.apply_xla_flags()
  f = flags.FLAGS
  try:
    distributed.initialize(f.coordinator_address, f.num_processes, f.process_id)
  except (ValueError, TypeError, RuntimeError) as e:
    fail(f"could not start the distributed runtime: {str(e).splitlines()[0]}")


def loaded_config():
  """The parsed --config, or a one-line error if the file could not be loaded."""
  config = flags.FLAGS.config
  try:
    config.keys()
  except Exception as e:  # config_flags defers load errors to the first access
    fail(" ".join(str(e).split()))
  return config


def run(fn: Callable, *args, **kwargs):
  """Calls fn, turning the errors a user can cause into one line on stderr and exit status 2."""
  try:
    return fn(*args, **kwargs)
  except (RunError, StirFileError, FileNotFoundError, PermissionError) as e:
    fail(str(e))
  except KeyboardInterrupt:
    fail("interrupted; rerun the same command to resume")


def default_workdir(config_path: str) -> str:
  return str(pathlib.Path("runs") / pathlib.Path(config_path).stem)
