"""Run in a subprocess with 8 fake CPU devices (tests/test_parallel.py): a few training steps on
one device, on 8 with jit+shardings and on 8 with pmap must give the same parameters, and sharded
evaluation must count every example once. Prints one JSON line of measurements."""
import json
import os
import sys

assert "--xla_force_host_platform_device_count=8" in os.environ.get("XLA_FLAGS", "")

import jax
import numpy as np
import optax

from stir_jax import metrics, models, parallel, training


def main():
  assert len(jax.devices()) == 8, jax.devices()
  model = models.get_model(sys.argv[1], 1, 5, impl=sys.argv[2])
  tx = optax.adam(1e-3)
  rng = np.random.default_rng(0)
  batches = [{"image": rng.random((16, 64, 64, 1), dtype=np.float32),
              "label": rng.integers(0, 5, 16).astype(np.int32),
              "scale": rng.integers(17, 65, 16).astype(np.int32),
              "mask": np.arange(16) < (16 if i < 2 else 11)} for i in range(3)]  # last one short
  init = training.create_train_state(model, tx, jax.random.PRNGKey(0), 1)
  out, params = {}, {}
  for name, par in [("one", parallel.DataParallel("jit", jax.devices()[:1])),
                    ("jit8", parallel.DataParallel("jit")),
                    ("pmap8", parallel.DataParallel("pmap"))]:
    state = par.put_state(jax.tree.map(np.array, init))
    step = par.train_step(training.train_step_fn(model, tx))
    for b in batches:
      state, stats = step(state, b)
    params[name] = par.get_state(state).params
    evaluate = par.eval_step(training.eval_step_fn(model))
    # 45 examples: not a multiple of 8; batches of 16 padded and masked
    n = 45
    ev = [{k: v[i:i + 16] for k, v in batches[0].items()} for i in range(0, 16, 16)]
    imgs = rng.random((n, 64, 64, 1), dtype=np.float32) if name == "one" else out["eval_imgs"]
    out["eval_imgs"] = imgs
    total = None
    for i in range(0, n, 16):
      b = {"image": imgs[i:i + 16], "label": np.zeros(len(imgs[i:i + 16]), np.int32),
           "scale": np.full(len(imgs[i:i + 16]), 20, np.int32)}
      k = len(b["label"])
      b = {key: np.concatenate([v, np.zeros((16 - k,) + v.shape[1:], v.dtype)]) for key, v in b.items()}
      b["mask"] = np.arange(16) < k
      total = metrics.merge(total, jax.device_get(evaluate(par.put_state(params[name]), b)))
    out[f"{name}_eval_count"] = float(total["count"])
    out[f"{name}_eval_loss"] = float(total["loss_sum"])
  del out["eval_imgs"]
  leaves = {k: jax.tree.leaves(v) for k, v in params.items()}
  for other in ("jit8", "pmap8"):
    out[f"{other}_max_rel"] = max(
        float(np.max(np.abs(a - b)) / max(np.max(np.abs(a)), 1e-12))
        for a, b in zip(leaves["one"], leaves[other]))
  out["changed"] = max(float(np.max(np.abs(a - b))) for a, b in
                       zip(leaves["one"], jax.tree.leaves(init.params)))
  print(json.dumps(out))


if __name__ == "__main__":
  main()
