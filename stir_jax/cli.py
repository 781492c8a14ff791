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
from stir_jax.errors import RunError

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
    fail(f"bad --config override: {_override_error(e)}")


def _override_error(e: Exception) -> str:
  """ml_collections' message for a bad override as one sentence: a KeyError's text is the repr of
  a message such as "'num_epoch'\nDid you mean \"num_epochs\" instead of \"num_epoch\"?"."""
  import re  # pylint: disable=g-import-not-at-top
  from stir_jax import experiment  # pylint: disable=g-import-not-at-top
  text = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
  text = str(text)
  name = re.search(r"[A-Za-z_]\w*", text)
  if isinstance(e, (KeyError, AttributeError)) and name:
    return experiment.unknown_field_message(name.group(0))
  return " ".join(text.split())


def print_help(extra: str = "") -> NoReturn:
  """The entry point's docstring, its flags and `extra` (train.py: the config fields); exit 0."""
  main = sys.modules.get("__main__")
  print((main.__doc__ or "").strip() + "\n")
  print("flags:")
  for name in ("config", "workdir", "runs", "out", "publish", "coordinator_address",
               "num_processes", "process_id"):
    if name in flags.FLAGS:
      flag = flags.FLAGS[name]
      default = getattr(flag, "config_filename", None) or flag.default
      print(f"  --{name}: {flag.help}" + (f" (default: {default})" if default else ""))
  if extra:
    print("\n" + extra)
  sys.exit(0)


def parse_flags(argv: list[str]) -> list[str]:
  """app.run's flags_parser: one line for a flag error instead of absl's usage text; --help (-h)
  prints the usage, the flags and (train.py) the config fields, and exits 0."""
  if any(a in ("--help", "-h", "-help", "--h") for a in argv[1:]):
    from stir_jax import experiment  # pylint: disable=g-import-not-at-top
    print_help("config fields (--config.<field>=value; stir_jax.experiment.FIELDS):\n"
               + experiment.fields_help() if "config" in flags.FLAGS else "")
  try:
    rest = flags.FLAGS(argv)
  except flags.Error as e:
    fail(str(e))
  except (AttributeError, KeyError, ValueError, TypeError) as e:
    # --config=FILE given: config_flags resolves the --config.<field> overrides here
    fail(f"bad --config override: {_override_error(e)}")
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


def loaded_experiment():
  """The --config checked (`stir_jax.experiment.from_config`), or a one-line error (exit 2) before
  anything is written."""
  from stir_jax import experiment  # pylint: disable=g-import-not-at-top
  try:
    return experiment.from_config(loaded_config())
  except RunError as e:
    fail(str(e))


def run(fn: Callable, *args, **kwargs):
  """Calls fn, turning the errors a user can cause into one line on stderr and exit status 2, and
  a preemption (SIGTERM, SIGINT: the position was saved) into its one line and exit status
  EXIT_PREEMPTED (75)."""
  from stir_jax.train import preemption  # pylint: disable=g-import-not-at-top
  try:
    return fn(*args, **kwargs)
  except preemption.Preempted as e:
    print(f"\n{e}", file=sys.stderr, flush=True)
    sys.exit(preemption.EXIT_PREEMPTED)
  except (RunError, StirFileError, FileNotFoundError, PermissionError) as e:
    fail(str(e))
  except KeyboardInterrupt:
    fail("interrupted; rerun the same command to resume")


def default_workdir(config_path: str) -> str:
  return str(pathlib.Path("runs") / pathlib.Path(config_path).stem)
