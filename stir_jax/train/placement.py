"""Where arrays live and how the one step runs over them: a (seed, data) device mesh.

Seeds are always an axis: the train state of N seeds (N = 1 is the ordinary run) is stacked along
a leading seed axis. The seed axis of the mesh takes gcd(N, local device count) devices and the
data axis the rest, so with one device every seed is on it, with as many devices as seeds each
trains one seed, and otherwise seeds and batches are both split. Devices are laid out so that every
process holds all seeds for its share of each global batch (what `inputs.split_batches` yields).

The step runs per device: each device takes its seeds and its own shard of their batches, and the
pure steps of `steps.py` reduce gradients and metric sums over the "data" axis. So every operation,
FFTs included, works on the device's shard only; nothing is all-gathered but the gradients' sums.

parallelism:
  "jit"  (default) jit(shard_map) over the (seed, data) mesh: one program for all devices and hosts.
  "pmap" the classic jax.pmap over the local devices, the seeds all on every device: the same
         per-device function and the same psum over the data axis.
seed_batching (how a device runs its seeds):
  "vmap"   one batched program (the fast form on accelerators); each step equals separate runs to
           float rounding (~1e-7).
  "unroll" one copy of the single-seed step per seed: bitwise the arithmetic of a separate run on
           CPU; compile time grows with the seeds per device.
  "auto"   unroll on CPU, vmap elsewhere.

Metric sums accumulate on the devices (the steps take and return the running sums): the host
reads them once per epoch, or every few steps for a progress bar.

Shapes: stacked state leaves (N, ...); train batches (N, B_local, ...) with B_local this process's
share of the global batch; evaluation batches (B_local, ...) shared by all seeds; sums (N, ...).
"""
from __future__ import annotations

import collections
import math
from typing import Any, Callable, Iterable, Iterator, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from stir_jax import metrics
from stir_jax.errors import RunError

SEED_AXIS = "seed"
DATA_AXIS = "data"
PARALLELISM = ("jit", "pmap")
SEED_BATCHING = ("auto", "vmap", "unroll")


def resolve_batching(batching: str) -> str:
  """"auto" -> "unroll" on CPU (exact and no slower there), "vmap" on accelerators."""
  if batching not in SEED_BATCHING:
    raise RunError(f"unknown seed_batching {batching!r}; valid: {', '.join(SEED_BATCHING)}")
  if batching == "auto":
    return "unroll" if jax.default_backend() == "cpu" else "vmap"
  return batching


def stack(trees: Sequence[Any]) -> Any:
  """Host (numpy) stack of identically structured trees along a new leading seed axis."""
  return jax.tree.map(lambda *xs: np.stack([np.asarray(x) for x in xs]), *trees)


def random_batch(rng: np.random.Generator, batch: int, channels: int, classes: int,
                 image_size: int = 64) -> dict[str, np.ndarray]:
  """A random host batch in the engine's layout, for probes and benchmarks: images in [0, 1),
  labels, object sizes 17..64 and an all-true mask."""
  return {"image": rng.random((batch, image_size, image_size, channels), dtype=np.float32),
          "label": rng.integers(0, classes, batch).astype(np.int32),
          "scale": rng.integers(17, 65, batch).astype(np.int32), "mask": np.ones(batch, bool)}


def unstack(tree: Any, i: int) -> Any:
  """Seed i of a stacked host tree."""
  return jax.tree.map(lambda x: x[i], tree)


def host_copy(tree: Any) -> Any:
  """numpy copy of a tree of (possibly sharded) arrays; every process gets the whole value (it
  holds every seed, see the mesh layout)."""

  def get(x):
    if not isinstance(x, jax.Array) or x.is_fully_addressable or x.is_fully_replicated:
      return np.array(x)  # a writable copy
    out = np.empty(x.shape, x.dtype)
    for shard in x.addressable_shards:
      out[shard.index] = np.asarray(shard.data)
    return out

  return jax.tree.map(get, tree)


def prefetch(items: Iterable[Any], put: Callable[[Any], Any], size: int = 2) -> Iterator[Any]:
  """put(item) for each item, `size` items ahead: the next batch is on its way to the devices
  while the current step runs (dispatch is asynchronous)."""
  queue = collections.deque()
  for item in items:
    queue.append(put(item))
    if len(queue) >= size:
      yield queue.popleft()
  while queue:
    yield queue.popleft()


def _tree_add(a, b):
  return jax.tree.map(jnp.add, a, b)


class Placement:
  """The (seed, data) mesh for `num_seeds` seeds and the compiled steps over it."""

  def __init__(self, num_seeds: int, parallelism: str = "jit", seed_batching: str = "auto",
               devices=None):
    if parallelism not in PARALLELISM:
      raise RunError(f"unknown parallelism {parallelism!r}; valid: {', '.join(PARALLELISM)}")
    if num_seeds < 1:
      raise RunError(f"need at least one seed, got {num_seeds}")
    devices = list(devices) if devices is not None else jax.devices()
    self.num_seeds = num_seeds
    self.parallelism = parallelism
    self.batching = resolve_batching(seed_batching)
    self.num_devices = len(devices)
    self.process_count = jax.process_count()
    self.local_devices = [d for d in devices if d.process_index == jax.process_index()]
    if parallelism == "pmap":
      self.seed_devices = 1
    else:
      self.seed_devices = math.gcd(num_seeds, len(self.local_devices))
    self.data_devices = self.num_devices // self.seed_devices
    grid = np.array(devices, dtype=object).reshape(self.data_devices, self.seed_devices).T
    self.mesh = Mesh(grid, (SEED_AXIS, DATA_AXIS))

  def describe(self) -> str:
    return (f"{self.num_seeds} seed(s) on {self.num_devices} device(s) in {self.process_count} "
            f"process(es): seed axis {self.seed_devices} x data axis {self.data_devices}, "
            f"{self.parallelism}, {self.batching}")

  # -- sizes ----------------------------------------------------------------------------------
  def check_global_batch(self, batch_size: int, what: str = "batch_size") -> None:
    if batch_size % self.data_devices:
      raise RunError(f"{what} {batch_size} is not divisible by the {self.data_devices} devices "
                     f"of the data axis ({self.describe()})")

  def eval_batch_size(self, wanted: int) -> int:
    """wanted rounded up to a multiple of the data axis (evaluation pads and masks)."""
    return -(-wanted // self.data_devices) * self.data_devices

  # -- placement ------------------------------------------------------------------------------
  def _sharding(self, *spec) -> NamedSharding:
    return NamedSharding(self.mesh, P(*spec))

  def put_state(self, tree: Any) -> Any:
    """A stacked host tree (leading seed axis on every leaf) onto the devices."""
    if self.parallelism == "pmap":  # every local device holds every seed
      n = len(self.local_devices)
      return jax.tree.map(lambda x: np.broadcast_to(np.asarray(x), (n, *np.shape(x))), tree)
    return jax.device_put(tree, self._sharding(SEED_AXIS))

  def get_state(self, tree: Any) -> Any:
    """Host (numpy) copy of a placed stacked tree: leaves (N, ...)."""
    if self.parallelism == "pmap":
      return jax.tree.map(lambda x: np.array(x[0]), tree)
    return host_copy(tree)

  def _put(self, batch: dict, spec: tuple, axis: int) -> dict:
    out = {}
    for k, v in batch.items():
      v = np.asarray(v)
      if self.parallelism == "pmap":  # (local devices, ..., share of the batch, ...)
        n = len(self.local_devices)
        shape = v.shape[:axis] + (n, v.shape[axis] // n) + v.shape[axis + 1:]
        out[k] = np.moveaxis(v.reshape(shape), axis, 0)
      else:
        shape = list(v.shape)
        shape[axis] *= self.process_count  # this process's share of the global batch
        out[k] = jax.make_array_from_process_local_data(self._sharding(*spec), v, tuple(shape))
    return out

  def put_train_batch(self, batch: dict) -> dict:
    """Stacked host batches (N, B_local, ...) onto the devices."""
    return self._put(batch, (SEED_AXIS, DATA_AXIS), axis=1)

  def put_eval_batch(self, batch: dict) -> dict:
    """One host batch (B_local, ...) for every seed onto the devices."""
    return self._put(batch, (DATA_AXIS,), axis=0)

  def zero_sums(self, per_scale: bool) -> dict:
    """Zero metric sums (N, ...) on the devices, to accumulate into."""
    return self.put_state(stack([metrics.zero_stats(per_scale)] * self.num_seeds))

  def get_sums(self, sums: dict) -> dict:
    """Host copy (float64) of accumulated metric sums: (N, ...) per key."""
    return {k: v.astype(np.float64) for k, v in self.get_state(sums).items()}

  # -- steps ----------------------------------------------------------------------------------
  def _over_seeds(self, fn: Callable, in_axes: tuple) -> Callable:
    """fn for one seed -> fn over a device's stacked seeds (args with in_axes 0 are stacked)."""
    if self.batching == "vmap":
      return jax.vmap(fn, in_axes=in_axes)

    def unrolled(*args):
      n = next(jax.tree.leaves(a)[0].shape[0] for a, ax in zip(args, in_axes) if ax == 0)
      outs = [fn(*[unstack(a, i) if ax == 0 else a for a, ax in zip(args, in_axes)])
              for i in range(n)]
      return jax.tree.map(lambda *xs: jnp.stack(xs), *outs)

    return unrolled

  def _compile(self, per_device: Callable, in_specs: tuple, out_specs, donate: tuple) -> Callable:
    if self.parallelism == "pmap":
      return jax.pmap(per_device, axis_name=DATA_AXIS, donate_argnums=donate,
                      devices=self.local_devices)
    # check_vma=False: gradients stay per-device partial sums, as under pmap, and the steps psum
    # them themselves (with check_vma=True autodiff would psum them too, counting each twice).
    return jax.jit(jax.shard_map(per_device, mesh=self.mesh, in_specs=in_specs,
                                 out_specs=out_specs, check_vma=False), donate_argnums=donate)

  def train_step(self, step_fn: Callable) -> Callable:
    """step_fn(state, batch, axis_name) (steps.train_step_fn) over the stacked seeds:
    (state, sums, placed batch) -> (state, sums + the step's metric sums); state and sums donated.
    """

    def one_seed(state, sums, batch):
      state, stats = step_fn(state, batch, DATA_AXIS)
      return state, _tree_add(sums, stats)

    seeds = P(SEED_AXIS)
    return self._compile(self._over_seeds(one_seed, (0, 0, 0)),
                         (seeds, seeds, P(SEED_AXIS, DATA_AXIS)), (seeds, seeds), donate=(0, 1))

  def eval_step(self, eval_fn: Callable) -> Callable:
    """eval_fn(params, batch, axis_name) (steps.eval_step_fn) with stacked params and one batch for
    all seeds: (params, sums, placed batch) -> sums + the batch's sums; sums donated."""

    def one_seed(params, sums, batch):
      return _tree_add(sums, eval_fn(params, batch, DATA_AXIS))

    seeds = P(SEED_AXIS)
    return self._compile(self._over_seeds(one_seed, (0, 0, None)),
                         (seeds, seeds, P(DATA_AXIS)), seeds, donate=(1,))

  def evaluate(self, eval_step: Callable, params, batches: Iterable[dict],
               per_scale: bool = True) -> dict:
    """Host sums (N, ...) of eval_step over host batches: one pass, the next batch prefetched.
    per_scale: the batches carry STIR object sizes ("scale"), so the sums have per-size parts."""
    sums, seen = self.zero_sums(per_scale=per_scale), False
    for batch in prefetch(batches, self.put_eval_batch):
      sums, seen = eval_step(params, sums, batch), True
    if not seen:
      raise RunError("an evaluation split is empty")
    return self.get_sums(sums)
