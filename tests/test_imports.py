"""Importing the library changes nothing global and does not pull in the training stack.

A fresh interpreter imports jax, flax and optax (whatever they do to the process is theirs), records
os.environ and jax.config, then imports stir_jax, its layers and models and builds a model. The
environment and JAX's configuration must be exactly as before, and neither TensorFlow,
tensorflow_datasets nor orbax may have been imported.
"""
import json
import os
import subprocess
import sys

_PROBE = r"""
import json, os, sys
import jax, flax, flax.linen, optax
env, config = dict(os.environ), dict(jax.config.values)
import stir_jax, stir_jax.layers, stir_jax.models, stir_jax.xla_flags
model = stir_jax.models.get_model("pixel_pool", num_channels=1, num_classes=10)
shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0),
                        jax.ShapeDtypeStruct((1, 64, 64, 1), jax.numpy.float32))
changed = sorted(k for k in set(env) | set(os.environ) if env.get(k) != os.environ.get(k))
config_changed = sorted(k for k, v in jax.config.values.items() if config.get(k, v) != v
                        or k not in config)
heavy = sorted({m.split(".")[0] for m in sys.modules}
               & {"tensorflow", "tensorflow_datasets", "orbax", "torch"})
print(json.dumps({"env": changed, "config": config_changed, "heavy": heavy,
                  "params": len(jax.tree.leaves(shapes))}))
"""


def test_import_has_no_side_effects():
  # The parent's own settings (conftest applied the XLA flag) must not hide a change.
  env = {k: v for k, v in os.environ.items()
         if not k.startswith(("XLA_", "TF_", "STIR_JAX_"))}
  out = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True,
                       check=True, timeout=300)
  report = json.loads(out.stdout.strip().splitlines()[-1])
  assert report["params"] == 6  # the model was built: 2 SiConv (kernel, bias) + dense
  assert report["env"] == [], report
  assert report["config"] == [], report
  assert report["heavy"] == [], report
