"""The Gaussian derivative network "gauss_der" (stir_jax.models.gaussian_derivative): shapes,
parameter count, no PyTorch conversion, and its scale covariance against the standard CNN's,
measured with the public equivariance helper (stir_jax.eval.equivariance)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from stir_jax import convert, metrics, models
from stir_jax.data import emoji, stir_file
from stir_jax.eval import equivariance


def _count(params):
  return sum(int(np.prod(p.shape)) for p in jax.tree.leaves(params))


@pytest.mark.parametrize("channels, classes, kwargs, expected", [
    (1, 36, {}, 4404), (3, 36, {}, 4596), (1, 10, {}, 3546),
    (1, 36, {"zero_order": False}, 3876), (1, 36, {"features": (48, 80)}, 26372)])
def test_parameter_counts(channels, classes, kwargs, expected, rng):
  """6 (5 without the zero-order term) coefficients per input-output channel pair and layer, a
  bias per output channel, the dense head; (48, 80) is the variant with the ~27k budget of the
  Altstidl et al. models."""
  model = models.get_model("gauss_der", channels, classes, **kwargs)
  params = jax.eval_shape(model.init, rng, jnp.zeros((1, 64, 64, channels)))["params"]
  assert _count(params) == expected
  terms = 6 if kwargs.get("zero_order", True) else 5
  widths = kwargs.get("features", (16, 32))
  assert params["conv1"]["kernel"].shape == (terms, channels, widths[0])
  assert params["conv2"]["kernel"].shape == (terms, widths[0], widths[1])


def test_shapes_scales_and_pooling(rng):
  model = models.get_model("gauss_der", 1, 36)
  assert model.layer_sigmas(0) == pytest.approx([2 ** ((i - 1) / 2) for i in range(8)])
  assert model.layer_sigmas(1) == pytest.approx([2 ** (i / 2) for i in range(8)])
  avg = models.get_model("gauss_der", 1, 36, scale_pool="avg")
  x = jax.random.uniform(rng, (2, 64, 64, 1))

  @jax.jit
  def run(x):
    variables = model.init(rng, x)
    logits, aux = model.apply(variables, x, with_aux=True)
    return logits, aux, avg.apply(variables, x, with_aux=True)[1]["features"]
  logits, aux, avg_features = run(x)
  assert logits.shape == (2, 36) and bool(jnp.all(jnp.isfinite(logits)))
  assert aux["stage1"].shape == (2, 8, 64, 64, 16) and aux["stage2"].shape == (2, 8, 64, 64, 32)
  # Max over scales, then over space: the global max of stage 2; average over scales: at most that.
  np.testing.assert_array_equal(aux["features"], jnp.max(aux["stage2"], axis=(1, 2, 3)))
  np.testing.assert_allclose(avg_features, jnp.max(jnp.mean(aux["stage2"], axis=1), axis=(1, 2)),
                             rtol=1e-6)
  assert bool(jnp.all(avg_features <= aux["features"])) and bool(
      jnp.any(avg_features < aux["features"]))


def test_no_reference_checkpoint():
  with pytest.raises(ValueError, match="no reference PyTorch checkpoint"):
    convert.from_torch_state_dict("gauss_der", {"conv1.weight": np.zeros(1)}, 1, 10)


# Object sizes about sqrt(2) apart (the model's scale ratio): the larger object's map at scale
# channel i + 1 should match the smaller one's at channel i.
PAIRS = ((17, 24), (23, 32), (32, 45), (45, 64))


def test_scale_covariance_against_standard_cnn(rng):
  """Two emoji icons (test split) at four pairs of sizes with ratio ~sqrt(2) (1.39 .. 1.42), both
  models at random initialisation (same key). The error is the helper's ||a - resize(b)||^2 /
  ||a||^2 on the object crops (`equivariance.scale_equivariance_error`, the paper's measure), of
  stage 2 (after both layers and ReLU):

  * gauss_der: scale channels 0..5 of the smaller object against channels 1..6 of the larger
    (shifted by one), all 32 feature channels of each;
  * control: the same channels 0..5 of both, unshifted;
  * standard: the standard CNN's stage 2 maps (no scale axis).

  Measured: gauss_der 0.024 (per pair 0.006, 0.035, 0.017, 0.038; max 0.060), control 0.081,
  standard 0.51: the shifted comparison is 21x below the standard CNN's and 3.4x below the
  unshifted one (neighbouring scale channels are similar, not equal). Keys 1 and 2: shift 0.025,
  0.028; control 0.084, 0.094; standard 0.52, 0.27. Asserted: 5x and 2x, max < 0.1.
  Channel 7 (layer-2 sigma 11.3, a kernel wider than the 64-pixel image) is left out: there the
  reflected image frame, which does not rescale with the object, dominates (with channels 1..6 ->
  2..7 the error was 0.041 under PyTorch's default initialisation, against 0.025 for 0..5 -> 1..6).
  """
  data = emoji.generate_emoji(emoji.EMOJI_NAMES[:2], progress=False)
  sizes = sorted({s for pair in PAIRS for s in pair})
  idx = [stir_file.index_of_scale(s) for s in sizes]
  x = data.imgs[2, idx, :, 0].reshape(-1, 64, 64, 1).astype(np.float32) / 255  # (sizes * icons)
  pos = data.psts[2, idx, :, 0]  # (sizes, icons, 2)
  n = data.imgs.shape[2]

  def stage2(name):
    model = models.get_model(name, 1, 10)

    @jax.jit
    def run(x):
      return model.apply(model.init(rng, x[:1]), x, with_aux=True)[1]["stage2"]
    out = np.asarray(run(x))
    return out.reshape(len(sizes), n, *out.shape[1:])

  def errors(maps, select_small, select_large):
    errs = []
    for small, large in PAIRS:
      i, j = sizes.index(small), sizes.index(large)
      for c in range(n):
        errs.append(equivariance.scale_equivariance_error(
            lambda m: m, select_small(maps[i, c]), small, pos[i, c],
            select_large(maps[j, c]), large, pos[j, c]))
    return np.array(errs)

  def channels(lo, hi):  # (S, H, W, C) -> (H, W, (hi - lo) C)
    return lambda m: np.moveaxis(m[lo:hi], 0, 2).reshape(*m.shape[1:3], -1)

  gauss = stage2("gauss_der")
  standard = stage2("standard")
  e_shift = errors(gauss, channels(0, 6), channels(1, 7))
  e_control = errors(gauss, channels(0, 6), channels(0, 6))
  e_standard = errors(standard, lambda m: m, lambda m: m)
  assert np.all(np.isfinite(e_shift)) and np.all(np.isfinite(e_standard))
  shift, control, std = e_shift.mean(), e_control.mean(), e_standard.mean()
  assert shift < 0.2 * std, (shift, std)
  assert shift < 0.5 * control, (shift, control)
  assert e_shift.max() < 0.1, e_shift

  # The helper's shifted measure (metrics.scale_axis_shift / shifted_equivariance_error, which
  # `model_equivariance_errors(..., scale_ratio=...)` uses) on the same crops: the small object as
  # reference gives shift -1 (the larger object's response sits one channel higher); on channels
  # 0..6 it reproduces e_shift, and the opposite shift is worse than no shift. Measured: all 8
  # channels (0..6 -> 1..7) 0.031, opposite shift 0.29, against control 0.081.
  ratio = equivariance.scale_axis_ratio(models.get_model("gauss_der", 1, 10))
  assert {metrics.scale_axis_shift(a, b, ratio) for a, b in PAIRS} == {-1}
  crop = lambda m, s, p: np.moveaxis(metrics.crop_to_object(np.moveaxis(m, 0, 2), s, p), 2, 0)

  def shifted(k, hi):
    return np.array([metrics.shifted_equivariance_error(
        crop(gauss[sizes.index(a), c, :hi], a, pos[sizes.index(a), c]),
        crop(gauss[sizes.index(b), c, :hi], b, pos[sizes.index(b), c]), k)
        for a, b in PAIRS for c in range(n)])
  np.testing.assert_allclose(shifted(-1, 7), e_shift, rtol=1e-12)
  assert shifted(1, 7).mean() > control > 2 * shifted(-1, 8).mean(), (shifted(1, 7), control)
