"""Every model's train step exports with jax.export for GPUs ("cuda") and TPUs ("tpu") from this
CPU-only host, and impl="auto" resolves per lowering platform and precision from the one table
`stir_jax.layers.forms.FORM_TABLE`: no FFT form on TPU (its FFT ignores precision, jax issue 9881);
on CPU the FFT forms of SiConv2d, the grouped, large-kernel and 3-D convolutions; on GPU at
"highest" the FFT form of SiConv2d only. Batch 1: export lowers without compiling."""
import jax
import optax
import pytest

from stir_jax import models
from stir_jax.layers import forms
from stir_jax.models.pooling import Conv3dCNN
from tests.models.test_program_size import step_args, train_step

SICONV = {"pixel_pool", "slice_pool", "energy_pool", "soft_pool", "conv3d"}  # SiConv2d models
# the forms of the FORM_TABLE families each model's train step holds (those with an FFT form)
FAMILIES = {**{m: {"siconv"} for m in SICONV}, "conv3d": {"siconv", "conv3d"},
            "xu": {"conv2d"}, "hermite": {"grouped"}, "disco": {"grouped"},
            "ss": {"large_kernel"}}
# the brief's models, exported for TPU at precision "highest"
TPU_HIGHEST = ("pixel_pool", "slice_pool", "energy_pool", "conv3d", "hermite", "disco", "xu")


def _fft_expected(name, platform, precision):
  return any(forms.auto_form(f, platform, precision) == "fft" for f in FAMILIES.get(name, ()))


def _export(model, platform, batch=1):
  tx = optax.adam(1e-3)
  args = step_args(model, tx, batch=batch)
  exported = jax.export.export(jax.jit(train_step(model, tx)), platforms=(platform,))(*args)
  return exported, args


@pytest.mark.parametrize("platform", ["cuda", "tpu"])
@pytest.mark.parametrize("name", models.model_names())
def test_train_step_exports(name, platform):
  exported, args = _export(models.get_model(name, 1, 10), platform)
  assert exported.platforms == (platform,)
  assert [a.shape for a in exported.in_avals] == [a.shape for a in jax.tree.leaves(args)]
  # Outputs: new params and optimizer state (same shapes as the inputs) and the loss.
  expected = [a.shape for a in jax.tree.leaves(args[:2])] + [()]
  assert [a.shape for a in exported.out_avals] == expected
  text = exported.mlir_module()
  assert ("stablehlo.fft" in text) == _fft_expected(name, platform, "highest"), name
  assert len(exported.mlir_module_serialized) < (1 << 20)


@pytest.mark.parametrize("name", TPU_HIGHEST)
def test_no_fft_on_tpu_at_highest_and_the_table_form_on_cpu(name):
  """precision="highest": the TPU train step holds no FFT, the CPU one the FFT form where the table
  gives one on CPU (every model here but xu, whose columns are plain convolutions)."""
  model = models.get_model(name, 1, 10, precision="highest")
  assert "stablehlo.fft" not in _export(model, "tpu")[0].mlir_module()
  assert _fft_expected(name, "cpu", "highest") == (name != "xu")
  assert ("stablehlo.fft" in _export(model, "cpu")[0].mlir_module()) == (name != "xu")


def test_gpu_form_depends_on_precision():
  """SiConv2d on GPU: the FFT form at "highest", the direct form (TF32 convolutions) at
  "default"."""
  text = lambda p: _export(models.get_model("pixel_pool", 1, 10, precision=p), "cuda")[0]
  assert "stablehlo.fft" in text("highest").mlir_module()
  assert "stablehlo.fft" not in text("default").mlir_module()


def test_auto_takes_the_fft_form_only_when_lowered_for_cpu():
  """hermite's grouped SESN layers: FFT in the CPU program, XLA's grouped convolution in the GPU
  one. xu's columns: ungrouped convolutions on both, no FFT."""
  cpu, _ = _export(models.get_model("hermite", 1, 10), "cpu")
  cuda, _ = _export(models.get_model("hermite", 1, 10), "cuda")
  assert "stablehlo.fft" in cpu.mlir_module() and "stablehlo.fft" not in cuda.mlir_module()
  assert "feature_group_count = 4" in cuda.mlir_module()
  for platform in ("cpu", "cuda"):
    text = _export(models.get_model("xu", 1, 10), platform)[0].mlir_module()
    assert "stablehlo.fft" not in text and "feature_group_count = 1" in text
    assert "feature_group_count = 5" not in text


def test_conv3d_model_impl_reaches_its_3d_convolution():
  """Conv3dCNN's impl picks the form of its SiConv layer and of its 3-D convolution alike."""
  direct = _export(Conv3dCNN(10, impl="direct"), "cpu")[0].mlir_module()
  assert "stablehlo.fft" not in direct
  conv3d = "[b, 0, 1, 2, f]x[0, 1, 2, i, o]"  # XLA's 3-D convolution
  assert conv3d in direct
  fft = _export(Conv3dCNN(10, impl="fft"), "tpu")[0].mlir_module()  # explicit fft: honoured
  assert "stablehlo.fft" in fft and conv3d not in fft
