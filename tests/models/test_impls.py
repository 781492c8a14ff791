"""Every model on every implementation it can take, against the authors' outputs.

Every model takes impl "auto" | "direct" | "fft" (`stir_jax.layers.forms`): the SiConv models
(pixel/slice/energy/soft pool, conv3d) "direct" (one convolution per kernel size; conv3d's 3-D
convolution XLA's) or "fft" (the exact FFT forms); the others the convolution form "direct" (XLA's)
or "fft" (`stir_jax.layers.conv.conv2d`). `impl="auto"` picks one per backend, so on this CPU the
other form would otherwise go untested at model level. For each model and each of its forms: the
logits (and the stage traces and features the fixture holds) against the reference model's at 1e-4
of max|ref|, and the scale-pool indices (>99.9% equal: they may differ only at the reference's own
near-ties) (soft_pool, which has no reference, compares its forms).
Slow: the gradients of sum(logits * r) with respect to the input and every parameter agree between
the forms at 1e-4 (the model fixtures hold no gradients).
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from stir_jax import convert, models
from tests.helpers import nchw_to_nhwc, rel_err

SICONV_IMPLS = ("direct", "fft")
CONV_IMPLS = ("direct", "fft")
IMPLS = {
    "standard": CONV_IMPLS, "ensemble": CONV_IMPLS, "spatial_transform": CONV_IMPLS,
    "xu": CONV_IMPLS, "kanazawa": CONV_IMPLS, "hermite": CONV_IMPLS, "disco": CONV_IMPLS,
    "pixel_pool": SICONV_IMPLS, "slice_pool": SICONV_IMPLS, "energy_pool": SICONV_IMPLS,
    "soft_pool": SICONV_IMPLS, "conv3d": SICONV_IMPLS, "ss": CONV_IMPLS, "sevf": CONV_IMPLS,
}
# no reference model (the paper has no soft pooling, SS-CNN or SEVF): forms compared with each other
NO_FIXTURE = {"soft_pool", "ss", "sevf"}


# models with one form only (impl "auto" or "direct"; "fft" is an error): parity tests elsewhere
SINGLE_FORM: set[str] = {"dss", "gauss_der"}  # one form each (lax convolutions)


def test_every_model_is_covered():
  """A model added to the registry must be listed here, with its forms or as single-form."""
  assert set(models.model_names()) == set(IMPLS) | SINGLE_FORM


@pytest.mark.parametrize("name", sorted(set(IMPLS) | SINGLE_FORM))
def test_every_model_takes_impl(name):
  """impl is a field of every model; an unknown impl is one clear error at build or use time."""
  model = models.get_model(name, 1, 10, impl="direct")
  assert model.impl == "direct"
  bad = models.get_model(name, 1, 10, impl="winograd")
  with pytest.raises(ValueError, match=r"unknown impl 'winograd'; valid: auto, direct, fft"):
    jax.eval_shape(bad.init, jax.random.PRNGKey(0), jax.ShapeDtypeStruct((1, 64, 64, 1),
                                                                         jnp.float32))


@pytest.mark.parametrize("name", sorted(SINGLE_FORM))
def test_single_form_models_refuse_fft(name):
  model = models.get_model(name, 1, 10, impl="fft")
  with pytest.raises(ValueError, match="has only the direct form"):
    jax.eval_shape(model.init, jax.random.PRNGKey(0), jax.ShapeDtypeStruct((1, 64, 64, 1),
                                                                           jnp.float32))


def _variables_and_input(name, load_fixture):
  """(variables, x, fixture or None): the reference weights and input, or for soft_pool (no
  fixture) a fresh init and a random input."""
  if name in NO_FIXTURE:
    x = np.asarray(jax.random.uniform(jax.random.PRNGKey(1), (2, 64, 64, 1)))
    return jax.jit(models.get_model(name, 1, 10).init)(jax.random.PRNGKey(0), x), x, None
  f = load_fixture(f"model_{name}")
  state = {k: v for k, v in f.items() if "." in k}
  variables = convert.from_torch_state_dict(name, state, num_channels=1, num_classes=10)
  return variables, nchw_to_nhwc(f["x"]), f


def _close(a, b, tol=1e-4):
  """max|a - b| <= tol * max|b|, where an all-zero b (a parameter the loss does not reach) needs
  an all-zero a."""
  scale = float(np.max(np.abs(np.asarray(b))))
  return float(np.max(np.abs(np.asarray(a) - np.asarray(b)))) <= tol * scale


def _default_run(name):
  """soft_pool (not a paper model; its forms compared with each other, 11 s) runs with -m slow."""
  return pytest.param(name, marks=pytest.mark.slow) if name in NO_FIXTURE else name


@pytest.mark.parametrize("name", [_default_run(n) for n in sorted(IMPLS)])
def test_logits_on_every_impl(name, load_fixture):
  variables, x, ref = _variables_and_input(name, load_fixture)
  outputs = {}
  for impl in IMPLS[name]:
    model = models.get_model(name, 1, 10, impl=impl)
    outputs[impl] = jax.jit(lambda v, x, model=model: model.apply(v, x, with_aux=True))(
        variables, x)
  for impl, (logits, aux) in outputs.items():
    if ref is None:
      assert _close(logits, outputs[IMPLS[name][0]][0]), impl
      continue
    assert rel_err(logits, ref["logits"]) <= 1e-4, impl
    for stage in ("stage1", "stage2"):
      if f"trace_{stage}" in ref:
        assert rel_err(aux[stage], nchw_to_nhwc(ref[f"trace_{stage}"])) <= 1e-4, (impl, stage)
    if "trace_features" in ref:
      assert rel_err(aux["features"], ref["trace_features"]) <= 1e-4, impl
    for i in (1, 2):
      if f"pool{i}_indices" in ref:
        idx = ref[f"pool{i}_indices"]
        idx = nchw_to_nhwc(idx) if idx.ndim == 4 else idx
        # indices may differ only where the reference itself has (near-)ties
        agree = np.mean(np.asarray(aux[f"pool{i}_indices"]) == idx)
        assert agree > 0.999, (impl, i, agree)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(IMPLS))
def test_gradients_agree_between_impls(name, load_fixture):
  """Slow (about 4 min for all on 2 cores: the SiConv models' direct backward pass compiles for
  20-40 s each); tests/layers checks FFT against direct gradients layer by layer by default."""
  variables, x, _ = _variables_and_input(name, load_fixture)
  r = np.asarray(jax.random.normal(jax.random.PRNGKey(2), (x.shape[0], 10)))
  grads = {}
  for impl in IMPLS[name]:
    model = models.get_model(name, 1, 10, impl=impl)
    loss = lambda v, x, model=model: jnp.sum(model.apply(v, x) * r)
    grads[impl] = jax.jit(jax.grad(loss, argnums=(0, 1)))(variables, x)
  a, b = (jax.tree.leaves(grads[i]) for i in IMPLS[name])
  assert len(a) == len(b) > 1
  for ga, gb in zip(a, b):
    assert _close(ga, gb)


def test_conv3d_fused_head_matches_the_reference_and_autodiff(load_fixture):
  """Without aux the conv3d model takes its fused head (`stir_jax.layers.conv.conv3d_relu_max`):
  its logits are the authors' (the fixture), and its parameter and input gradients equal autodiff
  of the unfused head (the with_aux=True program) on the reference weights and input."""
  variables, x, ref = _variables_and_input("conv3d", load_fixture)
  model = models.get_model("conv3d", 1, 10)
  assert rel_err(jax.jit(model.apply)(variables, x), ref["logits"]) <= 1e-4
  r = np.asarray(jax.random.normal(jax.random.PRNGKey(2), (x.shape[0], 10)))
  fused = lambda v, x: jnp.sum(model.apply(v, x) * r)
  unfused = lambda v, x: jnp.sum(model.apply(v, x, with_aux=True)[0] * r)
  got, want = (jax.tree.leaves(jax.jit(jax.grad(f, argnums=(0, 1)))(variables, x))
               for f in (fused, unfused))
  assert len(got) == len(want) == 7  # conv1 kernel, bias; conv2 kernel, bias; lin; x
  for g, w in zip(got, want):
    assert _close(g, w)
