"""A model from outside the package: the registry's contract, and train.py -> eval.py -> report.

The models live in a module written to a temporary folder (not in stir_jax), reached through
PYTHONPATH as a user's would be.
"""
import json
import os
import pathlib
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from stir_jax import models
from stir_jax.data import emoji, stir_file
from stir_jax.models import registry

REPO = pathlib.Path(__file__).resolve().parents[1]

USER_MODULE = textwrap.dedent('''
    """A user's models: Linen (with and without aux), NNX, and a factory."""
    import flax.linen as nn
    import jax.numpy as jnp
    from flax import nnx


    class TinyNet(nn.Module):
      """Declares num_classes and kernel_size only: nothing else is passed to it."""
      num_classes: int
      kernel_size: int = 3

      @nn.compact
      def __call__(self, x, with_aux=False):
        h = nn.relu(nn.Conv(8, (self.kernel_size, self.kernel_size), padding="VALID")(x))
        logits = nn.Dense(self.num_classes)(jnp.max(h, axis=(1, 2)))
        return (logits, {"stage1": h}) if with_aux else logits


    class PlainNet(nn.Module):
      num_classes: int

      @nn.compact
      def __call__(self, x):
        return nn.Dense(self.num_classes)(x.mean(axis=(1, 2)))


    class NnxNet(nnx.Module):
      def __init__(self, num_classes, num_channels, *, rngs):
        self.conv = nnx.Conv(num_channels, 4, (3, 3), padding="VALID", rngs=rngs)
        self.head = nnx.Linear(4, num_classes, rngs=rngs)

      def __call__(self, x):
        return self.head(jnp.max(nnx.relu(self.conv(x)), axis=(1, 2)))


    def make_net(num_classes, dtype=None):
      return PlainNet(num_classes=num_classes)


    def not_a_module(num_classes):
      return 42
''')


@pytest.fixture(scope="module")
def user_dir(tmp_path_factory):
  folder = tmp_path_factory.mktemp("user_code")
  (folder / "my_scale_nets.py").write_text(USER_MODULE)
  sys.path.insert(0, str(folder))
  yield folder
  sys.path.remove(str(folder))
  for name in [n for n in registry.REGISTRY if n.startswith("my_scale_nets:")]:
    del registry.REGISTRY[name]


def _logits(module, channels=1, classes=5):
  x = jnp.linspace(0, 1, 2 * 16 * 16 * channels).reshape(2, 16, 16, channels)
  variables = module.init(jax.random.PRNGKey(0), x)
  return module.apply(variables, x), variables


def test_linen_class_gets_only_what_it_declares(user_dir):
  spec = models.lookup("my_scale_nets:TinyNet")
  assert (spec.family, spec.kind, spec.aux, spec.pooling, spec.train_mode) == (
      "user", "stir", True, False, False)
  assert spec.takes == {"kernel_size"}
  module = models.get_model("my_scale_nets:TinyNet", 1, 5, kernel_size=5)
  assert module.kernel_size == 5
  logits, variables = _logits(module)
  assert logits.shape == (2, 5)
  assert variables["params"]["Conv_0"]["kernel"].shape == (5, 5, 1, 8)
  assert "my_scale_nets:TinyNet" in models.names(family="user")


def test_nnx_class_and_factory(user_dir):
  assert not models.lookup("my_scale_nets:PlainNet").aux
  nnx_module = models.get_model("my_scale_nets:NnxNet", 3, 4)
  logits, variables = _logits(nnx_module, channels=3, classes=4)
  assert logits.shape == (2, 4)
  assert variables["params"]["conv"]["kernel"].shape == (3, 3, 3, 4)
  factory = models.get_model("my_scale_nets:make_net", 1, 6)
  assert _logits(factory)[0].shape == (2, 6)


def test_register_names_a_model_and_guards_builtins(user_dir):
  import my_scale_nets  # pylint: disable=g-import-not-at-top,import-error
  spec = models.register("tiny_user_net", my_scale_nets.TinyNet, kernel_size=7)
  try:
    assert models.lookup("tiny_user_net") is spec
    assert models.get_model("tiny_user_net", 1, 3).kernel_size == 7
    with pytest.raises(ValueError, match="already registered; pass replace=True"):
      models.register("tiny_user_net", my_scale_nets.PlainNet)
    models.register("tiny_user_net", my_scale_nets.PlainNet, replace=True)
    with pytest.raises(ValueError, match="'pixel_pool' is already registered$"):
      models.register("pixel_pool", my_scale_nets.PlainNet, replace=True)
  finally:
    del registry.REGISTRY["tiny_user_net"]


@pytest.mark.parametrize("name, message", [
    ("no_such_pkg.nets:Net", "cannot import 'no_such_pkg.nets'"),
    ("my_scale_nets:Missing", "has no 'Missing'"),
    ("pixle_pool", "did you mean pixel_pool"),
])
def test_bad_names_are_one_line(user_dir, name, message):
  with pytest.raises(ValueError, match=message) as err:
    models.lookup(name)
  assert "\n" not in str(err.value)


def test_factory_must_build_a_flax_module(user_dir):
  with pytest.raises(ValueError, match="built a int, not a flax module"):
    models.get_model("my_scale_nets:not_a_module", 1, 3)


def test_every_builtin_model_is_in_the_one_registry():
  assert set(models.model_names()) | set(models.names("mnist_scale")) == set(registry.REGISTRY)
  assert set(models.names(family="paper")) == {
      "standard", "pixel_pool", "slice_pool", "energy_pool", "conv3d", "ensemble",
      "spatial_transform", "xu", "kanazawa", "hermite", "disco"}
  # the paper's table: 1e-2 for pixel_pool on All2All, 1e-3 for its other emoji cells
  assert models.lookup("pixel_pool").paper_lr(4) == 0.01
  assert models.lookup("pixel_pool").paper_lr(2) == 0.001
  assert models.lookup("dss").paper_lr(2) is None


def _cli(*args, env):
  return subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True,
                        timeout=600, env=env)


def test_own_model_trains_evaluates_and_reports(user_dir, tmp_path):
  """train.py, eval.py and the report with --config.model=my_scale_nets:TinyNet."""
  data = tmp_path / "emoji4.npz"
  stir_file.save_stir(data, emoji.generate_emoji(emoji.EMOJI_NAMES[:4], progress=False))
  env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(user_dir), str(REPO)]),
         "STIR_JAX_TCMALLOC": "0"}
  runs = tmp_path / "runs"
  workdir = runs / "tiny_net"
  train = _cli("train.py", "--config=configs/tiny.py", "--config.model=my_scale_nets:TinyNet",
               f"--config.dataset={data}", "--config.num_epochs=2", f"--workdir={workdir}",
               env=env)
  assert train.returncode == 0, train.stderr[-2000:]
  results = json.loads((workdir / "results.json").read_text())
  assert results["config"]["model"] == "my_scale_nets:TinyNet"
  assert 0.0 <= results["test_accuracy"] <= 1.0 and results["epochs_run"] == 2

  evaluate = _cli("eval.py", f"--workdir={workdir}", env=env)
  assert evaluate.returncode == 0, evaluate.stderr[-2000:]
  # progress: a bar over the test split, then the files it wrote
  assert "test split, 48 sizes" in evaluate.stderr
  assert ("wrote generalization.csv, accuracy_vs_scale.png, consistency.json, equivariance.npz, "
          "equivariance.png in") in evaluate.stdout
  with open(workdir / "generalization.csv") as f:
    header, row = f.read().splitlines()[:2]
  assert header.split(",")[:3] == ["model", "data", "eval"]
  assert row.startswith("my_scale_nets:TinyNet,emoji4,2,")
  per_size = np.array([float(v) for v in row.split(",")[3:]])
  assert per_size.shape == (48,) and np.all((per_size >= 0) & (per_size <= 100))
  assert (workdir / "equivariance.npz").exists()  # it takes with_aux: stage-1 maps

  report = _cli("eval.py", f"--runs={runs}", f"--out={tmp_path / 'report'}", env=env)
  assert report.returncode == 0, report.stderr[-2000:]
  summary = (tmp_path / "report" / "summary.csv").read_text()
  assert "my_scale_nets:TinyNet,emoji4,2," in summary
  assert "my_scale_nets:TinyNet" in (tmp_path / "report" / "report.md").read_text()
