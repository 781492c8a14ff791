"""The impl vocabulary and the per-backend form table (stir_jax.layers.forms), the interpolation
argument's name, and SiConv2d's eager (scan) form against its traced (unrolled) one."""
import pathlib
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from stir_jax.layers import forms
from stir_jax.layers.conv import conv2d, conv3d
from stir_jax.layers.siconv import SiConv2d, siconv2d, siconv2d_pool

DOC = pathlib.Path(__file__).resolve().parents[2] / "docs" / "precision.md"


def test_impl_vocabulary():
  assert [forms.check_impl(i) for i in forms.IMPLS] == ["auto", "direct", "fft"]
  with pytest.warns(DeprecationWarning, match="impl='xla' is deprecated; use impl='direct'"):
    assert forms.check_impl("xla") == "direct"
  with pytest.raises(ValueError, match=r"^unknown impl 'winograd'; valid: auto, direct, fft$"):
    forms.check_impl("winograd")


def test_no_fft_form_on_tpu_and_fft_on_cpu_where_measured():
  for family in forms.FAMILIES:
    for precision in forms.PRECISIONS:
      assert forms.auto_form(family, "tpu", precision) == "direct", (family, precision)
      expected = "direct" if family == "conv2d" else "fft"
      assert forms.auto_form(family, "cpu", precision) == expected, (family, precision)
  # lowering platform names map to backends; precisions to classes
  assert forms.auto_form("siconv", "cuda", "highest") == "fft"
  assert forms.auto_form("siconv", "rocm", jax.lax.Precision.DEFAULT) == "direct"
  assert forms.precision_class(None) == "default"
  assert forms.precision_class(("default", "highest")) == "highest"
  assert forms.precision_class("float32") == "highest"
  assert forms.precision_class("tensorfloat32") == "high"


def test_every_entry_says_how_it_was_decided():
  rows = forms.table_rows()
  assert len(rows) == len(forms.FAMILIES) * len(forms.BACKENDS) * len(forms.PRECISIONS)
  for family, backend, precision, form, evidence in rows:
    assert form in ("direct", "fft")
    assert evidence.startswith(("measured on ", "reasoned", "rule: ")), evidence
    assert backend != "tpu" or form == "direct"


def test_docs_show_the_table():
  """docs/precision.md lists every entry of FORM_TABLE as it is in the code."""
  text = DOC.read_text()
  for family, backend, precision, form, evidence in forms.table_rows():
    row = f"| {family} | {backend} | {precision} | {form} | {evidence} |"
    assert row in text, row


def _lowered(fn, *args, platform):
  return jax.jit(fn).trace(*args).lower(lowering_platforms=(platform,)).as_text()


def test_auto_follows_the_table_per_platform_and_precision():
  x, w, b = jnp.zeros((1, 9, 9, 1)), jnp.zeros((3, 3, 1, 2)), jnp.zeros(2)
  for precision in ("highest", "high", "default"):
    f = lambda x, w, b, p=precision: siconv2d_pool(x, w, b, num_scales=4, precision=p)
    for platform in ("cpu", "cuda", "tpu"):
      has_fft = "stablehlo.fft" in _lowered(f, x, w, b, platform=platform)
      assert has_fft == (forms.auto_form("siconv", platform, precision) == "fft"), (
          precision, platform)
  x3, w3 = jnp.zeros((1, 6, 8, 8, 2)), jnp.zeros((3, 3, 3, 2, 4))
  assert "stablehlo.fft" in _lowered(conv3d, x3, w3, platform="cpu")
  assert "stablehlo.fft" not in _lowered(conv3d, x3, w3, platform="tpu")
  grouped = lambda x, w: conv2d(x, w, padding=1, feature_group_count=2)
  xg, wg = jnp.zeros((1, 8, 8, 4)), jnp.zeros((3, 3, 2, 4))
  assert "stablehlo.fft" in _lowered(grouped, xg, wg, platform="cpu")
  assert "stablehlo.fft" not in _lowered(grouped, xg, wg, platform="tpu")


def test_xla_is_a_deprecated_alias_of_direct():
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.standard_normal((1, 9, 9, 2)), jnp.float32)
  w = jnp.asarray(rng.standard_normal((3, 3, 2, 3)), jnp.float32)
  with pytest.warns(DeprecationWarning):
    old = conv2d(x, w, impl="xla")
  np.testing.assert_array_equal(old, conv2d(x, w, impl="direct"))


def test_interpolation_name_and_its_mode_alias():
  rng = np.random.default_rng(1)
  x = jnp.asarray(rng.standard_normal((1, 8, 8, 1)), jnp.float32)
  w = jnp.asarray(rng.standard_normal((4, 4, 1, 2)), jnp.float32)
  b = jnp.zeros(2)
  new = siconv2d(x, w, b, num_scales=3, interpolation="bilinear", impl="direct")
  with pytest.warns(DeprecationWarning, match="mode= is deprecated; use interpolation="):
    old = siconv2d(x, w, b, num_scales=3, mode="bilinear", impl="direct")
  np.testing.assert_array_equal(new, old)
  assert not np.array_equal(new, siconv2d(x, w, b, num_scales=3, impl="direct"))  # bicubic
  with pytest.raises(ValueError, match="disagree"):
    siconv2d(x, w, b, num_scales=3, interpolation="area", mode="bilinear")
  with pytest.raises(ValueError, match="unknown interpolation 'cubic'"):
    siconv2d(x, w, b, num_scales=3, interpolation="cubic")
  layer = SiConv2d(2, kernel_size=4, interpolation="bilinear", impl="direct")
  variables = layer.init(jax.random.PRNGKey(0), x)
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    old_layer = SiConv2d(2, kernel_size=4, mode="bilinear", impl="direct")
    np.testing.assert_array_equal(layer.apply(variables, x), old_layer.apply(variables, x))


@pytest.mark.parametrize("pool", [None, "pixel", "slice", "energy"])
def test_eager_scan_form_equals_the_traced_form(pool):
  """An eager call (the scan over scales) gives the traced call's outputs (the unrolled loop) to
  float32 rounding, and the same scale indices."""
  rng = np.random.default_rng(2)
  x = jnp.asarray(rng.standard_normal((2, 13, 13, 1)), jnp.float32)
  w = jnp.asarray(rng.standard_normal((3, 3, 1, 2)), jnp.float32)
  b = jnp.asarray(rng.standard_normal(2), jnp.float32)
  if pool is None:
    f = lambda x, w, b: siconv2d(x, w, b, num_scales=6, impl="fft")
  else:
    f = lambda x, w, b: siconv2d_pool(x, w, b, num_scales=6, pool=pool, impl="fft")
  eager, traced = f(x, w, b), jax.jit(f)(x, w, b)
  if pool is None:
    eager, traced = (eager, None), (traced, None)
  scale = float(jnp.max(jnp.abs(traced[0])))
  assert float(jnp.max(jnp.abs(eager[0] - traced[0]))) <= 1e-5 * scale
  if pool is not None:
    np.testing.assert_array_equal(eager[1], traced[1])
  # the ring outside each scale's valid square stays exactly zero in the eager stack
  if pool is None:
    assert float(jnp.max(jnp.abs(eager[0][:, 5, :5]))) == 0.0


@pytest.mark.parametrize("partitionable", [True, False])
def test_torch_uniform_draws_what_a_shaped_draw_does(partitionable):
  """The flat threefry draw (cheap to compile eagerly) equals jax.random.uniform of the shape."""
  from stir_jax.layers.initializers import torch_uniform  # pylint: disable=g-import-not-at-top
  saved = jax.config.jax_threefry_partitionable
  jax.config.update("jax_threefry_partitionable", partitionable)
  try:
    bound = 1 / np.sqrt(18)
    for key in (jax.random.PRNGKey(3), jax.random.key(4)):
      for shape in ((3, 3, 2, 5), (7, 4), (6,)):
        expected = jax.random.uniform(key, shape, jnp.float32, -bound, bound)
        np.testing.assert_array_equal(torch_uniform(18)(key, shape), expected)
    rbg = jax.random.key(5, impl="rbg")
    np.testing.assert_array_equal(torch_uniform(18)(rbg, (3, 4)),
                                  jax.random.uniform(rbg, (3, 4), jnp.float32, -bound, bound))
  finally:
    jax.config.update("jax_threefry_partitionable", saved)
