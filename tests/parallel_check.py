"""Run in a subprocess with 8 fake CPU devices (tests/test_parallel.py): a few training steps of
the engine's one step on one device, on 8 with jit(shard_map) and on 8 with pmap must give the
same parameters; sharded evaluation must count every example once; the compiled 8-device step must
hold no all-gather and do about 1/8 of the one-device step's FLOPs per device. Prints one JSON line."""
import json
import os
import sys

assert "--xla_force_host_platform_device_count=8" in os.environ.get("XLA_FLAGS", "")

import jax
import numpy as np
import optax

from stir_jax import bench, models
from stir_jax.train import placement as placement_lib, state as state_lib, steps


def main():
  assert len(jax.devices()) == 8, jax.devices()
  model = models.get_model(sys.argv[1], 1, 5, impl=sys.argv[2])
  tx = optax.adam(1e-3)
  rng = np.random.default_rng(0)
  batches = [{"image": rng.random((16, 64, 64, 1), dtype=np.float32),
              "label": rng.integers(0, 5, 16).astype(np.int32),
              "scale": rng.integers(17, 65, 16).astype(np.int32),
              "mask": np.arange(16) < (16 if i < 2 else 11)} for i in range(3)]  # last one short
  init = jax.device_get(state_lib.create_train_state(model, tx, jax.random.PRNGKey(0), 1))
  out, params = {}, {}
  imgs = rng.random((45, 64, 64, 1), dtype=np.float32)  # 45: not a multiple of 8 or 16
  for name, place in [("one", placement_lib.Placement(1, "jit", devices=jax.devices()[:1])),
                      ("jit8", placement_lib.Placement(1, "jit")),
                      ("pmap8", placement_lib.Placement(1, "pmap"))]:
    state = place.put_state(placement_lib.stack([init]))
    step = place.train_step(steps.train_step_fn(model, tx))
    sums = place.zero_sums(per_scale=False)
    for b in batches:
      state, sums = step(state, sums, place.put_train_batch(placement_lib.stack([b])))
    out[f"{name}_train_count"] = float(place.get_sums(sums)["count"][0])
    params[name] = placement_lib.unstack(place.get_state(state), 0).params
    evaluate = place.eval_step(steps.eval_step_fn(model))
    host_batches = []
    for i in range(0, 45, 16):
      b = {"image": imgs[i:i + 16], "label": np.zeros(len(imgs[i:i + 16]), np.int32),
           "scale": np.full(len(imgs[i:i + 16]), 20, np.int32)}
      k = len(b["label"])
      b = {key: np.concatenate([v, np.zeros((16 - k,) + v.shape[1:], v.dtype)])
           for key, v in b.items()}
      b["mask"] = np.arange(16) < k
      host_batches.append(b)
    total = place.evaluate(evaluate, place.put_state(placement_lib.stack([params[name]])),
                           host_batches)
    out[f"{name}_eval_count"] = float(total["count"][0])
    out[f"{name}_eval_loss"] = float(total["loss_sum"][0])
  leaves = {k: jax.tree.leaves(v) for k, v in params.items()}
  for other in ("jit8", "pmap8"):
    out[f"{other}_max_rel"] = max(
        float(np.max(np.abs(a - b)) / max(np.max(np.abs(a)), 1e-12))
        for a, b in zip(leaves["one"], leaves[other]))
  out["changed"] = max(float(np.max(np.abs(a - b))) for a, b in
                       zip(leaves["one"], jax.tree.leaves(init.params)))
  # the compiled programs: per-device FLOPs and collectives
  one = bench.compiled_step(model, tx, 16, 1, 5, devices=jax.devices()[:1])[0]
  eight = bench.compiled_step(model, tx, 16, 1, 5)[0]
  out["flop_share"] = bench._flops(eight) / bench._flops(one)  # pylint: disable=protected-access
  text = eight.as_text()
  out["all_gathers"] = text.count("all-gather")
  out["all_reduces"] = text.count("all-reduce")
  print(json.dumps(out))


if __name__ == "__main__":
  main()
