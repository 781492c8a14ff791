"""Importing the library changes nothing global and does not pull in the training stack; the core
install (pyproject.toml's dependencies) leaves that stack to the extras.

A fresh interpreter imports jax, flax and optax (whatever they do to the process is theirs), records
os.environ, jax.config and the packages loaded so far, then imports stir_jax, its layers and models,
the device benchmark and the runtime module, and builds a model. The environment and JAX's
configuration must be exactly as before, neither TensorFlow, tensorflow_datasets nor orbax may have
been imported, and no package of an extra may have been loaded by stir_jax.
"""
import json
import os
import pathlib
import re
import subprocess
import sys
import tomllib

from stir_jax import _optional

PYPROJECT = pathlib.Path(__file__).resolve().parents[1] / "pyproject.toml"

_PROBE = r"""
import json, os, sys
import jax, flax, flax.linen, optax
env, config = dict(os.environ), dict(jax.config.values)
loaded = {m.split(".")[0] for m in sys.modules}
import stir_jax, stir_jax.layers, stir_jax.models, stir_jax.runtime, stir_jax.bench.device
model = stir_jax.models.get_model("pixel_pool", num_channels=1, num_classes=10)
shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0),
                        jax.ShapeDtypeStruct((1, 64, 64, 1), jax.numpy.float32))
changed = sorted(k for k in set(env) | set(os.environ) if env.get(k) != os.environ.get(k))
config_changed = sorted(k for k, v in jax.config.values.items() if config.get(k, v) != v
                        or k not in config)
heavy = sorted({m.split(".")[0] for m in sys.modules}
               & {"tensorflow", "tensorflow_datasets", "orbax", "torch"})
new = sorted({m.split(".")[0] for m in sys.modules} - loaded)
print(json.dumps({"env": changed, "config": config_changed, "heavy": heavy, "new": new,
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
  optional = {m.split(".")[0] for m in _optional.EXTRAS["train"]} | {"skimage", "pytest"}
  assert "stir_jax" in report["new"] and not optional & set(report["new"]), report["new"]


def _names(requirements) -> set[str]:
  """Distribution names of requirement strings, lower case ("jax>=0.7" -> "jax")."""
  return {re.split(r"[<>=!~;\[ ]", r, maxsplit=1)[0].strip().lower() for r in requirements}


def test_core_install_leaves_the_training_stack_to_extras():
  project = tomllib.loads(PYPROJECT.read_text())["project"]
  core, extras = _names(project["dependencies"]), project["optional-dependencies"]
  assert {"jax", "flax", "optax", "numpy", "scipy"} <= core
  assert not core & {"tensorflow", "tensorflow-cpu", "tensorflow-datasets", "orbax-checkpoint",
                     "tensorboard", "ml-collections", "absl-py", "cairosvg", "pillow",
                     "matplotlib", "tqdm", "fontawesome-free"}, core
  assert {"tensorflow-cpu", "tensorflow-datasets", "cairosvg", "fontawesome-free",
          "pillow"} <= _names(extras["data"])
  # train.py makes its data file when it is missing: [train] holds [data]; [test] holds [train]
  assert "stir_jax[data]" in extras["train"] and "stir_jax[train]" in extras["test"]
  assert {"orbax-checkpoint", "ml-collections", "tensorboard", "absl-py"} <= _names(
      extras["train"])
  assert {"pytest", "pytest-xdist", "scikit-image"} <= _names(extras["test"])
  assert set(extras) == {"data", "train", "test", "all"}
