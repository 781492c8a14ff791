"""The MNIST-scale protocol through the one engine: a tiny realisation (a few hundred generated
digits), mnist_cnn_28 for 2 epochs with configs/mnist_scale.py (step learning rate, normalised
inputs, no early stopping, batch norm and dropout), resumed after a crash, evaluated, and trained
on 4 fake CPU devices through train.py.

Compilation dominates here, so the in-process runs share JAX's persistent compilation cache (the
crashed and the resumed run compile the very program the full run compiled).
"""
import json
import os
import pathlib
import subprocess
import sys

import jax
import numpy as np
import pytest

from configs import mnist_scale as mnist_scale_config
from stir_jax.data import mnist, mnist_scale
from stir_jax.eval import evaluation
from stir_jax.train import RunError, engine, global_batch, state as state_lib
from stir_jax.data import splits as inputs
from stir_jax import checkpoints, rundir
from tests.data.test_mnist_scale import square_digits

REPO = pathlib.Path(__file__).resolve().parents[1]
SIZES = {"train": 160, "valid": 48, "test": 96}  # batch 64: 3 steps an epoch, the last one padded


@pytest.fixture(scope="module")
def data_path(tmp_path_factory):
  images, labels = square_digits(400, 0)
  # make the class learnable: class c gets c bright rows on top of its square
  for i, c in enumerate(labels):
    images[i, 1:1 + c, 2:26] = 200
  source = mnist.DigitSource(images[:300], labels[:300], images[300:], labels[300:], "squares")
  data = mnist_scale.generate_mnist_scale(source, 0, sizes=SIZES, progress=False)
  path = tmp_path_factory.mktemp("data") / "mnist_scale_0.npz"
  mnist_scale.save_mnist_scale(path, data)
  return path


# The protocol's rate is 0.01; 1e-4 here. Adam turns gradients at rounding level (parameters that
# batch norm makes irrelevant in train mode, such as a bias right before it, have exactly zero
# gradient in exact arithmetic) into steps of +-lr whose sign depends on the float sum order, so
# runs on 1 and 4 devices drift apart by about lr (measured: relative train-loss differences of
# 1.2e-3 at lr 1e-3, 4e-5 at lr 1e-4). The small rate keeps that drift well below what a
# device-dependent batch norm or dropout would cause (see test_four_devices...).
LR = 1e-4


def _config(data_path, **overrides):
  config = mnist_scale_config.get_config()
  config.update(dict(dataset=str(data_path), num_epochs=2, batch_size=64, eval_batch_size=64,
                     lr_decay_epochs=(1,), learning_rate=LR))
  config.update(overrides)
  return config


@pytest.fixture(scope="module")
def compile_cache(tmp_path_factory):
  """JAX's persistent compilation cache in a temporary folder for this module's runs (JAX decides
  once per process whether it uses the cache: reset_cache makes it look again)."""
  from jax.experimental.compilation_cache import compilation_cache
  keys = ("jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs",
          "jax_persistent_cache_min_entry_size_bytes")
  before = {k: jax.config.values[k] for k in keys}
  jax.config.update("jax_compilation_cache_dir", str(tmp_path_factory.mktemp("jax_cache")))
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
  compilation_cache.reset_cache()
  yield
  for k, v in before.items():
    jax.config.update(k, v)
  compilation_cache.reset_cache()


@pytest.fixture(scope="module")
def four_devices(data_path, tmp_path_factory):
  """train.py on 4 fake CPU devices, started at once: it runs while the in-process runs compile.
  (workdir, Popen)."""
  workdir = tmp_path_factory.mktemp("four") / "run"
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4",
             JAX_PLATFORMS="cpu", PYTHONPATH=str(REPO))
  proc = subprocess.Popen(
      [sys.executable, str(REPO / "train.py"), "--config=configs/mnist_scale.py",
       f"--config.dataset={data_path}", "--config.num_epochs=2", "--config.batch_size=64",
       "--config.eval_batch_size=64", "--config.lr_decay_epochs=(1,)",
       f"--config.learning_rate={LR}", f"--workdir={workdir}"],
      env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  yield workdir, proc
  if proc.poll() is None:
    proc.kill()
    proc.communicate()


@pytest.fixture(scope="module")
def full(four_devices, data_path, compile_cache, tmp_path_factory):
  workdir = tmp_path_factory.mktemp("full") / "run"
  return workdir, engine.train_and_evaluate(_config(data_path), workdir, progress=False)


def _best_variables(workdir):
  config = evaluation.load_run_config(workdir)
  return evaluation.restore_model(workdir, config, inputs.load_dataset(config))[1]


def test_protocol_pieces():
  config = mnist_scale_config.get_config()
  assert (config.learning_rate, config.batch_size, config.num_epochs, config.patience) == (
      0.01, 128, 60, 0)
  assert tuple(config.lr_decay_epochs) == (20, 40) and config.lr_decay_factor == 0.1
  assert (config.input_mean, config.input_std) == (mnist_scale.MEAN, mnist_scale.STD)
  # MultiStepLR stepped once per epoch: epochs 1-20 at 0.01, 21-40 at 1e-3, 41-60 at 1e-4. Adam's
  # update from the same moments scales with the rate of the step count it is taken at.
  tx = state_lib.make_optimizer(config, steps_per_epoch=79)

  def update_at(step):
    state = jax.tree.map(lambda x: np.asarray(step, x.dtype) if np.ndim(x) == 0 else x,
                         tx.init(np.zeros(1, np.float32)))
    return float(abs(tx.update(np.ones(1, np.float32), state, np.zeros(1, np.float32))[0][0]))

  for step in (20 * 79, 40 * 79):  # the first step of epochs 21 and 41 takes a tenth
    assert update_at(step) / update_at(step - 1) == pytest.approx(0.1, rel=1e-3)
  assert update_at(20 * 79 - 2) / update_at(20 * 79 - 1) == pytest.approx(1, rel=1e-3)
  assert engine.should_stop({"bad_epochs": 50}, 0) is False
  with pytest.raises(RunError, match="lr_decay_epochs"):
    state_lib.make_optimizer(mnist_scale_config.get_config())


def test_tiny_run_trains_and_evaluates(full, data_path):
  workdir, results = full
  assert results["benchmark"] == "mnist_scale" and results["model"] == "mnist_cnn_28"
  assert results["epochs_run"] == 2 and results["stop_reason"] == "num_epochs reached"
  assert results["test_count"] == SIZES["test"] and "per_scale" not in results
  rows = rundir.read_metrics(workdir)
  assert [r["epoch"] for r in rows] == [1, 2]
  assert rows[1]["train_loss"] < rows[0]["train_loss"]  # it learns
  assert results["best_val_accuracy"] == max(r["val_accuracy"] for r in rows)
  # batch_stats: kept with the best parameters, moved away from their initial 0 / 1
  variables = _best_variables(workdir)
  stats = variables["batch_stats"]
  assert set(stats) == {"bn1", "bn2", "bn3", "linear"}
  assert np.max(np.abs(stats["bn1"]["mean"])) > 1e-2
  assert np.max(np.abs(stats["linear"]["linear1"]["var"] - 1)) > 1e-2
  # eval.py's evaluation restores them and reproduces training's test numbers
  out = evaluation.evaluate(workdir)
  assert out["test_accuracy"] == pytest.approx(results["test_accuracy"], abs=1e-9)
  assert out["test_loss"] == pytest.approx(results["test_loss"], rel=1e-5)
  assert sum(r["count"] for r in out["per_scale_bin"]) == SIZES["test"]
  assert (workdir / "accuracy_vs_scale.csv").exists()
  assert (workdir / "accuracy_vs_scale.png").stat().st_size > 10_000


def test_resume_restores_batch_stats(full, data_path, tmp_path):
  workdir, results = full
  config = _config(data_path)

  class Crash(Exception):
    pass

  def crash_after_1(epoch):
    if epoch == 1:
      raise Crash()

  with pytest.raises(Crash):
    engine.train_and_evaluate(config, tmp_path / "run", progress=False,
                              on_epoch_end=crash_after_1)
  model = state_lib.build_model(config, inputs.load_dataset(config))
  tx = state_lib.make_optimizer(config, steps_per_epoch=3)
  fresh = jax.device_get(state_lib.create_train_state(model, tx, jax.random.PRNGKey(0), 1, 28,
                                                      train_mode=True))
  ckpt = checkpoints.Checkpoints(tmp_path / "run")
  saved, meta = ckpt.restore_latest(state_lib.checkpoint_tree(fresh))
  ckpt.close()
  assert meta["epoch"] == 1 and set(saved) == {"step", "params", "opt_state", "batch_stats", "rng"}
  assert int(saved["step"]) == 3
  moved = jax.tree.map(lambda a, b: float(np.max(np.abs(a - b))), saved["batch_stats"],
                       fresh.batch_stats)
  assert min(jax.tree.leaves(moved)) > 0  # every running statistic changed in epoch 1
  np.testing.assert_array_equal(saved["rng"], fresh.rng)
  state, _, _, ckpt, _ = engine.start_or_resume(model, tx, 0, 1, tmp_path / "run", False, 28, True)
  ckpt.close()
  jax.tree.map(np.testing.assert_array_equal, state.batch_stats, saved["batch_stats"])

  resumed = engine.train_and_evaluate(config, tmp_path / "run", progress=False)
  for key in ("test_accuracy", "test_loss", "best_val_accuracy", "best_epoch", "epochs_run"):
    assert resumed[key] == results[key], key
  assert rundir.read_metrics(tmp_path / "run") == [
      dict(r, epoch_seconds=m["epoch_seconds"])
      for r, m in zip(rundir.read_metrics(workdir), rundir.read_metrics(tmp_path / "run"))]
  jax.tree.map(np.testing.assert_array_equal, _best_variables(tmp_path / "run"),
               _best_variables(workdir))


def test_models_and_data_must_match(data_path, tmp_path):
  with pytest.raises(RunError, match="not an MNIST-scale model"):
    engine.train_and_evaluate(_config(data_path, model="standard"), tmp_path / "a",
                              progress=False)
  from stir_jax.data import emoji, stir_file
  stir = tmp_path / "emoji2.npz"
  stir_file.save_stir(stir, emoji.generate_emoji(emoji.EMOJI_NAMES[:2], progress=False))
  with pytest.raises(RunError, match="is an MNIST-scale model"):
    engine.train_and_evaluate(_config(stir), tmp_path / "b", progress=False)


def test_global_batch_layers_do_not_depend_on_the_split():
  """Batch norm and dropout of the global batch: two shards of 4 (vmapped over a named axis)
  give the one-device result; padding takes no part in the statistics."""
  import flax.linen as nn
  import jax.numpy as jnp

  class Net(nn.Module):
    @nn.compact
    def __call__(self, x, train=False):
      x = nn.BatchNorm(use_running_average=not train, momentum=0.9)(x)
      return nn.Dropout(0.5, deterministic=not train)(x)

  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(2.0, 3.0, (8, 3, 5)), jnp.float32)
  mask = jnp.arange(8) < 7
  net = Net()
  variables = net.init(jax.random.PRNGKey(0), x)

  def run(x, mask, axis_name):
    with global_batch.global_batch_layers(mask, axis_name):
      return net.apply(variables, x, train=True, mutable=["batch_stats"],
                       rngs={"dropout": jax.random.PRNGKey(5)})

  y1, s1 = jax.jit(lambda x, m: run(x, m, None))(x, mask)
  y2, s2 = jax.jit(jax.vmap(lambda x, m: run(x, m, "data"), axis_name="data"))(
      x.reshape(2, 4, 3, 5), mask.reshape(2, 4))
  np.testing.assert_allclose(np.asarray(y2).reshape(8, 3, 5), y1, rtol=1e-6, atol=1e-6)
  for leaf1, leaf2 in zip(jax.tree.leaves(s1), jax.tree.leaves(s2)):
    np.testing.assert_allclose(leaf2[0], leaf1, rtol=1e-6)
    np.testing.assert_allclose(leaf2[1], leaf1, rtol=1e-6)
  real = np.asarray(x[:7]).reshape(-1, 5)
  n = len(real)
  np.testing.assert_allclose(s1["batch_stats"]["BatchNorm_0"]["mean"], 0.1 * real.mean(0),
                             rtol=1e-5)
  np.testing.assert_allclose(s1["batch_stats"]["BatchNorm_0"]["var"],
                             0.9 + 0.1 * real.var(0) * n / (n - 1), rtol=1e-5)
  kept = np.asarray(y1 != 0)
  assert 0.3 < kept.mean() < 0.7
  normalised = (np.asarray(x) - real.mean(0)) / np.sqrt(real.var(0) + 1e-5)
  np.testing.assert_allclose(np.asarray(y1)[kept], 2 * normalised[kept], rtol=1e-4, atol=1e-5)


def test_four_devices_through_train_py_match_one(full, four_devices):
  """train.py on 4 fake CPU devices (each holding 16 of every 64 images) against the in-process
  one-device run: the same global batches, batch statistics over the global batch, the same
  dropout masks; the float sums differ in order only.

  Tolerances. From the same state, one step on 4 devices gives the loss to 5e-7 and the running
  statistics to 7e-6 (relative) of one device; with per-device batch statistics instead the
  running statistics differ by 2e-1 (loss 1e-3), with per-device dropout masks the loss by 2e-2
  (measured on the CNN, batch 64). Over the 6 Adam steps the runs drift by about LR (see LR):
  measured 4e-5 on the losses, 1.3e-3 on the best checkpoint's batch statistics, one training
  example of 160 on the epoch-2 train accuracy. The bounds below are 10x those, well under
  the device-dependent alternatives.
  """
  workdir, one = full
  four_dir, proc = four_devices
  stdout, stderr = proc.communicate(timeout=900)
  assert proc.returncode == 0, stderr[-3000:]
  assert "test accuracy" in stdout
  four = json.loads((four_dir / "results.json").read_text())
  assert (four["num_devices"], one["num_devices"]) == (4, 1)
  assert four["test_count"] == one["test_count"] == SIZES["test"]
  a, b = rundir.read_metrics(workdir), rundir.read_metrics(four_dir)
  assert [r["epoch"] for r in a] == [r["epoch"] for r in b] == [1, 2]
  for key in ("train_loss", "val_loss"):
    np.testing.assert_allclose([r[key] for r in b], [r[key] for r in a], rtol=5e-4, err_msg=key)
  assert four["test_loss"] == pytest.approx(one["test_loss"], rel=5e-4)
  for key, n in (("train_accuracy", SIZES["train"]), ("val_accuracy", SIZES["valid"])):
    assert max(abs(x[key] - y[key]) * n for x, y in zip(a, b)) <= 2.5, key  # <= 2 examples
  assert abs(four["test_accuracy"] - one["test_accuracy"]) * SIZES["test"] <= 2.5
  va, vb = _best_variables(workdir), _best_variables(four_dir)
  rel = jax.tree.map(lambda p, q: float(np.max(np.abs(p - q)) / np.max(np.abs(p))),
                     va["batch_stats"], vb["batch_stats"])
  assert max(jax.tree.leaves(rel)) <= 1.5e-2, rel


# --- one step on 1 and 4 devices from the same state (a subprocess: 4 fake CPU devices) --------

def _step_check() -> dict:
  """One train step of mnist_cnn_28 (Adam, train mode, batch 64) from the same state on 1 device
  and on 4, and on 4 with the batch statistics or the dropout masks made per device (controls)."""
  import optax
  from stir_jax.models.mnist_scale import get_mnist_model
  from stir_jax.train import placement as pl, steps
  assert len(jax.devices()) == 4, jax.devices()
  model, tx = get_mnist_model("mnist_cnn_28"), optax.adam(1e-3)
  rng = np.random.default_rng(0)
  batch = {"image": rng.random((64, 28, 28, 1), dtype=np.float32),
           "label": rng.integers(0, 10, 64).astype(np.int32), "mask": np.arange(64) < 56}
  init = jax.device_get(state_lib.create_train_state(model, tx, jax.random.PRNGKey(0), 1, 28,
                                                     train_mode=True))

  def run(place):
    step = place.train_step(steps.train_step_fn(model, tx, train_mode=True))
    state, sums = step(place.put_state(pl.stack([init])), place.zero_sums(False),
                       place.put_train_batch(pl.stack([batch])))
    return (float(place.get_sums(sums)["loss_sum"][0]),
            pl.unstack(place.get_state(state), 0).batch_stats)

  def rel(a, b):
    return max(jax.tree.leaves(jax.tree.map(
        lambda x, y: float(np.max(np.abs(x - y)) / np.max(np.abs(x))), a, b)))

  loss1, stats1 = run(pl.Placement(1, "jit", devices=jax.devices()[:1]))
  out = {}
  psum, index = global_batch._psum, global_batch.global_index  # pylint: disable=protected-access
  for name in ("synced", "per_device_bn", "per_device_dropout"):
    if name == "per_device_bn":
      global_batch._psum = lambda x, axis_name: x  # pylint: disable=protected-access
    if name == "per_device_dropout":
      global_batch._psum = psum  # pylint: disable=protected-access
      global_batch.global_index = lambda b, axis_name: index(b, None)
    loss4, stats4 = run(pl.Placement(1, "jit"))
    out[name] = {"loss": abs(loss4 / loss1 - 1), "batch_stats": rel(stats1, stats4)}
  global_batch.global_index = index
  return out


@pytest.mark.slow
def test_one_step_on_four_devices_equals_one_device():
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4",
             JAX_PLATFORMS="cpu", PYTHONPATH=str(REPO))
  proc = subprocess.run([sys.executable, __file__], env=env, capture_output=True, text=True,
                        timeout=900)
  assert proc.returncode == 0, proc.stderr[-3000:]
  out = json.loads(proc.stdout.strip().splitlines()[-1])
  assert out["synced"]["loss"] <= 1e-5 and out["synced"]["batch_stats"] <= 1e-4, out
  assert out["per_device_bn"]["batch_stats"] >= 1e-2, out  # the check would see unsynced BN
  assert out["per_device_dropout"]["loss"] >= 1e-3, out    # and device-dependent masks


if __name__ == "__main__":
  from stir_jax import runtime
  runtime.apply_xla_flags()
  print(json.dumps(_step_check()))
