"""Every model's train step exports with jax.export for GPUs ("cuda") and TPUs ("tpu") from this
CPU-only host, and impl="auto" resolves per lowering platform: the grouped (xu, SESN H->H) and 3-D
(conv3d) convolutions take the FFT form only when lowered for CPU; SiConv2d takes its FFT form on
every platform (stir_jax.layers.siconv explains why)."""
import jax
import optax
import pytest

from stir_jax import models
from tests.models.test_program_size import step_args, train_step

FFT_EVERYWHERE = {"pixel_pool", "slice_pool", "energy_pool", "soft_pool", "conv3d"}  # SiConv2d


def _export(name, platform):
  model, tx = models.get_model(name, 1, 10), optax.adam(1e-3)
  args = step_args(model, tx, batch=2)
  exported = jax.export.export(jax.jit(train_step(model, tx)), platforms=(platform,))(*args)
  return exported, args


@pytest.mark.parametrize("platform", ["cuda", "tpu"])
@pytest.mark.parametrize("name", models.model_names())
def test_train_step_exports(name, platform):
  exported, args = _export(name, platform)
  assert exported.platforms == (platform,)
  assert [a.shape for a in exported.in_avals] == [a.shape for a in jax.tree.leaves(args)]
  # Outputs: new params and optimizer state (same shapes as the inputs) and the loss.
  expected = [a.shape for a in jax.tree.leaves(args[:2])] + [()]
  assert [a.shape for a in exported.out_avals] == expected
  text = exported.mlir_module()
  assert ("stablehlo.fft" in text) == (name in FFT_EVERYWHERE), name
  assert len(exported.mlir_module_serialized) < (1 << 20)


def test_auto_takes_the_fft_form_only_when_lowered_for_cpu():
  """xu's grouped layer: FFT in the CPU program, XLA's grouped convolution in the GPU one."""
  cpu, _ = _export("xu", "cpu")
  cuda, _ = _export("xu", "cuda")
  assert "stablehlo.fft" in cpu.mlir_module() and "stablehlo.fft" not in cuda.mlir_module()
  assert "feature_group_count = 5" in cuda.mlir_module()
