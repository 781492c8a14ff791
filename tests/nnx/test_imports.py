"""Importing stir_jax.nnx changes nothing global and pulls in neither TensorFlow nor orbax."""
import json
import os
import subprocess
import sys

_PROBE = r"""
import json, os, sys
import jax, flax, flax.nnx
env, config = dict(os.environ), dict(jax.config.values)
import stir_jax.nnx
changed = sorted(k for k in set(env) | set(os.environ) if env.get(k) != os.environ.get(k))
config_changed = sorted(k for k, v in jax.config.values.items() if config.get(k, v) != v
                        or k not in config)
heavy = sorted({m.split(".")[0] for m in sys.modules}
               & {"tensorflow", "tensorflow_datasets", "orbax", "torch"})
print(json.dumps({"env": changed, "config": config_changed, "heavy": heavy,
                  "names": len(stir_jax.nnx.__all__)}))
"""


def test_import_has_no_side_effects():
  env = {k: v for k, v in os.environ.items() if not k.startswith(("XLA_", "TF_", "STIR_JAX_"))}
  out = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True,
                       check=True, timeout=300)
  report = json.loads(out.stdout.strip().splitlines()[-1])
  assert report == {"env": [], "config": [], "heavy": [], "names": 18}, report
