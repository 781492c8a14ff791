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

A lost process (killed, its host gone) would leave the others waiting in a collective: a monitor
thread (`PeerMonitor`) publishes this process's heartbeat in the coordinator's key-value store and
watches the others'; a process silent for STIR_JAX_LOST_PROCESS_SECONDS (default 30) ends every
other process with one line naming it and exit status `EXIT_LOST_PROCESS`. JAX's own heartbeat
(STIR_JAX_HEARTBEAT_TIMEOUT, default 60 s: jax.distributed.initialize's heartbeat_timeout_seconds)
is the backstop. docs/clusters.md describes the knobs.

  python train.py --coordinator_address=127.0.0.1:12345 --num_processes=2 --process_id=0 &
  python train.py --coordinator_address=127.0.0.1:12345 --num_processes=2 --process_id=1
"""
from __future__ import annotations

import os
import sys
import threading
import time

import jax
import numpy as np

EXIT_LOST_PROCESS = 76  # a process of the job was lost; rerun the same command on every process

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
  jax.distributed.initialize(coordinator_address=address, num_processes=count, process_id=index,
                             **timeouts(env))
  lost_after = _env_float(env, "STIR_JAX_LOST_PROCESS_SECONDS", 30.0)
  if lost_after > 0:
    PeerMonitor(lost_after).start()
  return True


def _env_float(env, key: str, default: float) -> float:
  value = env.get(key)
  if value in (None, ""):
    return default
  try:
    return float(value)
  except ValueError:
    raise ValueError(f"{key}={value!r} is not a number") from None


def timeouts(env=None) -> dict:
  """jax.distributed.initialize's heartbeat and shutdown timeouts from STIR_JAX_HEARTBEAT_TIMEOUT
  (default 60 s) and STIR_JAX_SHUTDOWN_TIMEOUT (default 120 s)."""
  env = os.environ if env is None else env
  return {"heartbeat_timeout_seconds": int(_env_float(env, "STIR_JAX_HEARTBEAT_TIMEOUT", 60)),
          "shutdown_timeout_seconds": int(_env_float(env, "STIR_JAX_SHUTDOWN_TIMEOUT", 120))}


class PeerMonitor(threading.Thread):
  """Every `lost_after` / 6 seconds: set this process's counter in the coordinator's key-value
  store and read the others'. A process whose counter did not move for `lost_after` seconds (or
  an unreachable coordinator: process 0) ends this process with one line and EXIT_LOST_PROCESS.
  A daemon thread: it beats while the main thread computes, compiles or waits in a collective."""

  PREFIX = "stir_jax_heartbeat/"

  def __init__(self, lost_after: float):
    super().__init__(name="stir_jax-peer-monitor", daemon=True)
    self.lost_after = lost_after
    self.period = max(lost_after / 6, 0.2)

  def run(self) -> None:
    from jax._src import distributed as jax_distributed  # pylint: disable=g-import-not-at-top
    client = jax_distributed.global_state.client
    me, n = jax.process_index(), jax.process_count()
    seen = {p: (None, time.monotonic()) for p in range(n) if p != me}
    beat, reachable = 0, time.monotonic()
    while client is not None:
      beat += 1
      now = time.monotonic()
      try:
        client.key_value_set(f"{self.PREFIX}{me}", str(beat), allow_overwrite=True)
        values = dict(client.key_value_dir_get(self.PREFIX))
        reachable = now
      except Exception:  # pylint: disable=broad-except  (the coordinator is gone)
        if now - reachable > self.lost_after:
          lost(0, "the coordinator does not answer")
        values = {}
      for p, (last, since) in seen.items():
        value = values.get(f"{self.PREFIX}{p}")
        if value is not None and value != last:
          seen[p] = (value, now)
        elif now - since > self.lost_after and values:
          lost(p, f"no heartbeat for {now - since:.0f} s")
      time.sleep(self.period)


def lost(process: int, why: str) -> None:
  """Ends this process: one line naming the lost process, exit status EXIT_LOST_PROCESS."""
  print(f"\nerror: lost process {process} of the job ({why}); process {jax.process_index()} "
        "stops. Rerun the same command on every process to resume from the last checkpoint",
        file=sys.stderr, flush=True)
  os._exit(EXIT_LOST_PROCESS)  # pylint: disable=protected-access  (the main thread may be stuck)


def any_process(bits: int) -> int:
  """The bitwise OR of `bits` over all processes (a small collective every process must call at
  the same point); `bits` itself with one process."""
  if jax.process_count() == 1:
    return int(bits)
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  got = multihost_utils.process_allgather(np.array([bits], np.int32))
  return int(np.bitwise_or.reduce(np.asarray(got).reshape(-1)))


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
