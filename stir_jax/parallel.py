"""Data parallelism over every device JAX sees, on one host or many.

Two paths give the same results (the loss is normalised by the global count of real examples,
gradients and metric sums are reduced over all devices):

* "jit" (default, what JAX recommends): a 1-D mesh with a "data" axis; batches are sharded along
  it (NamedSharding), the train state is replicated, and jit with donated state does the rest.
* "pmap": the classic jax.pmap with an explicit psum over the device axis. JAX now recommends jit
  with shardings; pmap is offered because many existing pipelines still use it.

Each host feeds only its local share of the global batch (see stir_jax.data.pipeline's
process_index/process_count); `jax.make_array_from_process_local_data` assembles the global array.

>>> par = DataParallel("jit")
>>> state = par.put_state(state)
>>> step = par.train_step(step_fn)        # step_fn(state, batch, axis_name) from training.py
>>> state, stats = step(state, host_batch)
"""
from __future__ import annotations

import os
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

AXIS = "data"


def maybe_initialize_distributed() -> None:
  """Calls jax.distributed.initialize() when launched as one of several processes.

  Recognised launches: JAX_COORDINATOR_ADDRESS (+ JAX_NUM_PROCESSES, JAX_PROCESS_ID) set by hand,
  SLURM (srun with several tasks) and Cloud TPU pod slices (TPU_WORKER_HOSTNAMES with more than
  one host). A single-process run does nothing.
  """
  env = os.environ
  multi = ("JAX_COORDINATOR_ADDRESS" in env
           or int(env.get("SLURM_NTASKS", "1")) > 1
           or len(env.get("TPU_WORKER_HOSTNAMES", "").split(",")) > 1)
  if multi and not jax.distributed.is_initialized():
    jax.distributed.initialize()


class DataParallel:
  """Placement and compiled steps for one data-parallel path ("jit" or "pmap")."""

  def __init__(self, mode: str = "jit", devices=None):
    if mode not in ("jit", "pmap"):
      raise ValueError(f"unknown parallelism {mode!r}; valid: jit, pmap")
    self.mode = mode
    self.devices = list(devices) if devices is not None else jax.devices()
    self.num_devices = len(self.devices)
    self.process_count = jax.process_count()
    self.local_devices = [d for d in self.devices if d.process_index == jax.process_index()]
    if mode == "jit":
      self.mesh = Mesh(np.array(self.devices), (AXIS,))
      self.replicated = NamedSharding(self.mesh, P())
      self.sharded = NamedSharding(self.mesh, P(AXIS))

  # -- sizes --------------------------------------------------------------------------------
  def check_global_batch(self, batch_size: int, what: str = "batch_size") -> None:
    if batch_size % self.num_devices:
      raise ValueError(f"{what} {batch_size} is not divisible by the {self.num_devices} devices")

  def eval_batch_size(self, wanted: int) -> int:
    """wanted rounded up to a multiple of the device count (evaluation pads and masks)."""
    n = self.num_devices
    return -(-wanted // n) * n

  # -- placement ----------------------------------------------------------------------------
  def put_state(self, tree: Any) -> Any:
    if self.mode == "jit":
      return jax.device_put(tree, self.replicated)
    n = len(self.local_devices)  # pmap shards a leading device axis over the local devices
    return jax.tree.map(lambda x: np.broadcast_to(np.asarray(x), (n, *np.shape(x))), tree)

  def get_state(self, tree: Any) -> Any:
    """Host copy (numpy) of a placed, replicated tree."""
    if self.mode == "pmap":
      tree = jax.tree.map(lambda x: x[0], tree)
    return jax.device_get(tree)

  def put_batch(self, batch: dict) -> dict:
    if self.mode == "jit":
      return {k: jax.make_array_from_process_local_data(self.sharded, np.asarray(v))
              for k, v in batch.items()}
    n = len(self.local_devices)
    return {k: np.asarray(v).reshape(n, -1, *np.shape(v)[1:]) for k, v in batch.items()}

  # -- steps --------------------------------------------------------------------------------
  def train_step(self, step_fn: Callable) -> Callable:
    """step_fn(state, batch, axis_name) -> (state, stats) made into a compiled step on host data."""
    if self.mode == "jit":
      compiled = jax.jit(lambda s, b: step_fn(s, b, None), donate_argnums=0,
                         out_shardings=(self.replicated, self.replicated))
    else:
      compiled = jax.pmap(lambda s, b: step_fn(s, b, AXIS), axis_name=AXIS, donate_argnums=0,
                          devices=self.local_devices)

    def run(state, batch):
      state, stats = compiled(state, self.put_batch(batch))
      return state, self._stats(stats)

    run.compiled = compiled
    return run

  def eval_step(self, eval_fn: Callable) -> Callable:
    """eval_fn(params, batch, axis_name) -> stats made into a compiled step on host data."""
    if self.mode == "jit":
      compiled = jax.jit(lambda p, b: eval_fn(p, b, None), out_shardings=self.replicated)
    else:
      compiled = jax.pmap(lambda p, b: eval_fn(p, b, AXIS), axis_name=AXIS,
                          devices=self.local_devices)

    def run(params, batch):
      return self._stats(compiled(params, self.put_batch(batch)))

    return run

  def _stats(self, stats):
    if self.mode == "pmap":
      stats = jax.tree.map(lambda x: x[0], stats)
    return stats


def psum_if(x, axis_name: str | None):
  """lax.psum over axis_name inside pmap; identity under jit (sharding reduces globally)."""
  return x if axis_name is None else jax.lax.psum(x, axis_name)
