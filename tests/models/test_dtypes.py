"""Every model in bfloat16 (and a subset in float16): finite forward and backward passes whose
logits stay close to float32's; and the precision policy: by default every convolution and matmul
runs at HIGHEST precision, `precision="default"` hands the choice to the backend.

Tolerance. The error is measured as max|logits_low - logits_f32| / max|logits_f32|. bfloat16 keeps
8 significant bits, a relative rounding error of at most 2^-9 ~ 0.002 per stored value; on the way
to the logits the image, every kernel and every activation are rounded about eight times, so even
errors that add up coherently stay below ~0.016. We allow 0.03; measured: at most 0.007 (kanazawa),
0.002-0.006 for the others. float16 keeps 11 bits (2^-12 per rounding, ~0.002 coherent): we allow
0.005, measured at most 0.0014 (xu).

Inputs are 32x32 (every model runs at that size; the SiConv models then have 13 and 10 scales
rather than 29 and 26), which keeps the compilation of the twelve models short.
"""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from stir_jax import models

SIZE = 32
TOLERANCE = {jnp.bfloat16: 0.03, jnp.float16: 0.005}
FLOAT16_MODELS = ("standard", "pixel_pool", "conv3d", "xu", "hermite", "spatial_transform")


def _logits_and_grads(name, dtype):
  x = jax.random.uniform(jax.random.PRNGKey(1), (2, SIZE, SIZE, 1))
  labels = jnp.array([1, 3])
  reference = models.get_model(name, 1, 10)
  low = models.get_model(name, 1, 10, dtype=dtype)

  @jax.jit
  def run(key):
    params = reference.init(key, x)["params"]
    logits_f32 = reference.apply({"params": params}, x)

    def loss(p):
      logits = low.apply({"params": p}, x)
      per_example = optax.softmax_cross_entropy_with_integer_labels(
          logits.astype(jnp.float32), labels)
      return per_example.mean(), logits

    (_, logits_low), grads = jax.value_and_grad(loss, has_aux=True)(params)
    return logits_f32, logits_low, grads

  # An rbg key: its bits compile in a fraction of threefry's time; the values do not matter here.
  return run(jax.random.key(0, impl="rbg"))


def _check(name, dtype):
  logits_f32, logits_low, grads = _logits_and_grads(name, dtype)
  assert logits_low.dtype == dtype and logits_low.shape == (2, 10)
  assert logits_f32.dtype == jnp.float32
  err = float(jnp.max(jnp.abs(logits_low.astype(jnp.float32) - logits_f32))
              / jnp.max(jnp.abs(logits_f32)))
  assert err <= TOLERANCE[dtype], f"{name}: {err:.4f}"
  leaves = jax.tree.leaves(grads)
  assert all(g.dtype == jnp.float32 for g in leaves)  # param_dtype: gradients of float32 params
  assert all(bool(jnp.all(jnp.isfinite(g))) for g in leaves)
  # The gradient is not trivially zero: most parameter arrays receive some (not all: at
  # initialisation the spatial transformer's last localisation layer is zero, which cuts the
  # gradient to the layers before it).
  assert sum(float(jnp.max(jnp.abs(g))) > 0 for g in leaves) >= len(leaves) / 2


# slice_pool, energy_pool and soft_pool share ScalePoolCNN with pixel_pool (whose bfloat16 and
# float16 checks stay in the default run) and their pools' reduced-precision paths are checked at
# layer level (tests/layers/test_dtypes.py): their model-level checks (30 s each on a slow 2-core
# machine) run with -m slow.
SLOW_IN_BFLOAT16 = ("slice_pool", "energy_pool", "soft_pool")


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow)
                                  if n in SLOW_IN_BFLOAT16 else n for n in models.model_names()])
def test_bfloat16_forward_backward(name):
  _check(name, jnp.bfloat16)


@pytest.mark.parametrize("name", FLOAT16_MODELS)
def test_float16_forward_backward(name):
  _check(name, jnp.float16)


def test_get_model_takes_names_and_rejects_bad_values():
  model = models.get_model("standard", 1, 10, dtype="bfloat16", param_dtype="float32",
                           precision="DEFAULT")
  assert model.dtype == jnp.bfloat16 and model.param_dtype == jnp.float32
  assert model.precision == jax.lax.Precision.DEFAULT
  assert models.get_model("standard", 1, 10).precision == jax.lax.Precision.HIGHEST
  assert models.get_model("standard", 1, 10).dtype is None
  with pytest.raises(ValueError, match="unknown precision"):
    models.get_model("standard", 1, 10, precision="fast")
  with pytest.raises(ValueError, match="floating"):
    models.get_model("standard", 1, 10, dtype="int8")


def test_param_dtype_bfloat16(rng):
  model = models.get_model("pixel_pool", 1, 10, dtype=jnp.bfloat16, param_dtype=jnp.bfloat16)
  x = jnp.zeros((1, SIZE, SIZE, 1))
  params = jax.eval_shape(model.init, rng, x)["params"]
  assert {a.dtype for a in jax.tree.leaves(params)} == {jnp.dtype(jnp.bfloat16)}


# --- The precision policy, read off the jaxpr of a train step's loss and gradient.

def _precisions(jaxpr) -> list:
  """The precision of every convolution and dot in a closed jaxpr, sub-jaxprs included."""
  found = []
  for eqn in jaxpr.eqns:
    if eqn.primitive.name in ("dot_general", "conv_general_dilated"):
      p = eqn.params.get("precision")
      found.append(p[0] if isinstance(p, tuple) else p)
    for value in eqn.params.values():
      for sub in (value if isinstance(value, (list, tuple)) else (value,)):
        if isinstance(sub, jax.extend.core.ClosedJaxpr):
          found += _precisions(sub.jaxpr)
        elif isinstance(sub, jax.extend.core.Jaxpr):
          found += _precisions(sub)
  return found


@pytest.mark.parametrize("name", models.model_names())
def test_precision_policy(name, rng):
  x = jnp.zeros((2, SIZE, SIZE, 1))
  counts = {}
  for precision in ("highest", "default"):
    model = models.get_model(name, 1, 10, precision=precision)
    params = jax.eval_shape(model.init, rng, x)["params"]
    grad = jax.grad(lambda p: jnp.sum(model.apply({"params": p}, x)))
    found = _precisions(jax.make_jaxpr(grad)(params).jaxpr)
    assert found, name
    counts[precision] = sum(p == jax.lax.Precision.HIGHEST for p in found), len(found)
  highest, total = counts["highest"]
  assert highest == total, f"{name}: {total - highest} of {total} products below HIGHEST"
  # "default" reaches the model's own convolutions and matmuls; only the DFT products inside the
  # FFT forms keep HIGHEST.
  highest, total = counts["default"]
  assert highest < total, name
  if name in ("standard", "ensemble", "spatial_transform", "kanazawa"):  # no FFT form on CPU
    assert highest == 0, name
