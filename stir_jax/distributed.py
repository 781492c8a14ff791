"""Several processes (hosts): starting JAX's distributed runtime, and who writes.

`initialize()` is called by every entry point (train.py, eval.py, the sweep, the benchmarks) before
anything touches a device. It starts `jax.distributed` when this process is one of several:

* explicit arguments (the entry points' --coordinator_address, --num_processes, --process_id flags),
* the environment variables JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID,
* or JAX's own cluster auto-detection: SLURM (srun with several tasks), Cloud TPU pod slices,
  Open MPI (mpirun), Kubernetes.

A single process does nothing. On CPU, several processes need CPU collectives: gloo is switched on
(`jax_cpu_collectives_implementation`) unless the user chose an implementation.

Only process 0 writes logs, metrics and results (`is_main()`); orbax checkpoints are written by all
processes together (orbax coordinates them), and `barrier(name)` lines the processes up where one
of them prepared files the others read.

  python train.py --coordinator_address=127.0.0.1:12345 --num_processes=2 --process_id=0 &
  python train.py --coordinator_address=127.0.0.1:12345 --num_processes=2 --process_id=1
"""
from __future__ import annotations

import os

import jax

_MULTI_ENV = {
    "SLURM_NTASKS": "srun with several tasks",
    "OMPI_COMM_WORLD_SIZE": "mpirun",
    "JAX_NUM_PROCESSES": "JAX_NUM_PROCESSES",
}


def _launched_as_several(env) -> bool:
  if env.get("JAX_COORDINATOR_ADDRESS"):
    return True
  if any(int(env.get(k, "1") or "1") > 1 for k in _MULTI_ENV):
    return True
  return len([h for h in env.get("TPU_WORKER_HOSTNAMES", "").split(",") if h]) > 1


def _env_int(env, key: str) -> int | None:
  value = env.get(key)
  if value in (None, ""):
    return None
  try:
    return int(value)
  except ValueError:
    raise ValueError(f"{key}={value!r} is not an integer") from None


def initialize(coordinator_address: str | None = None, num_processes: int | None = None,
               process_id: int | None = None, env=None) -> bool:
  """Starts JAX's distributed runtime if this is one of several processes; returns whether it did.

  Arguments win over JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES / JAX_PROCESS_ID, which win over
  JAX's cluster auto-detection. Calling it again (or with one process) changes nothing.
  """
  env = os.environ if env is None else env
  if jax.distributed.is_initialized():
    return True
  explicit = coordinator_address is not None or (num_processes or 1) > 1
  if not explicit and not _launched_as_several(env):
    return False
  address = coordinator_address or env.get("JAX_COORDINATOR_ADDRESS") or None
  count = num_processes if num_processes is not None else _env_int(env, "JAX_NUM_PROCESSES")
  index = process_id if process_id is not None else _env_int(env, "JAX_PROCESS_ID")
  if count is not None and count <= 1 and address is None:
    return False
  if jax.config.jax_cpu_collectives_implementation in (None, "", "none"):
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(coordinator_address=address, num_processes=count, process_id=index)
  return True


def add_arguments(parser) -> None:
  """--coordinator-address, --num-processes, --process-id on an argparse parser (the sweep, the
  benchmarks); see `initialize_from_args`."""
  parser.add_argument("--coordinator-address", default=None,
                      help="host:port of process 0 (or JAX_COORDINATOR_ADDRESS)")
  parser.add_argument("--num-processes", type=int, default=None,
                      help="number of processes (or JAX_NUM_PROCESSES)")
  parser.add_argument("--process-id", type=int, default=None,
                      help="this process's index (or JAX_PROCESS_ID)")


def initialize_from_args(args) -> bool:
  """`initialize` with the arguments of `add_arguments`."""
  return initialize(args.coordinator_address, args.num_processes, args.process_id)


def is_main() -> bool:
  """Whether this process writes logs, metrics and results (process 0)."""
  return jax.process_index() == 0


def barrier(name: str) -> None:
  """Waits until every process reaches the barrier `name` (nothing to wait for with one)."""
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
    multihost_utils.sync_global_devices(name)


def describe() -> str:
  """'process i of n, d local / D global devices (backend)'."""
  return (f"process {jax.process_index()} of {jax.process_count()}, "
          f"{jax.local_device_count()} local / {jax.device_count()} global device(s) "
          f"({jax.default_backend()})")
