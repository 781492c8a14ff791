"""The SESN layers (stir_jax.layers.sesn) with the Hermite (A, B) and the DISCO basis, and their
parity with the authors' layers (peer fixtures sesn_*.npz)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from stir_jax.layers.conv import conv2d
from stir_jax.layers.sesn import SESConvHH, SESConvHH1x1, SESConvZ2H, sesn_basis_for, sesn_lift
from stir_jax.layers.sesn_basis import disco_basis, hermite_basis, hermite_basis_a
from stir_jax.models.sesn import DiscoModel, HermiteModel
from tests.helpers import load_peer, nchw_to_nhwc, rel_err


def test_named_bases_are_the_models_bases():
  np.testing.assert_array_equal(sesn_basis_for("hermite"), HermiteModel(num_classes=2)._basis())
  np.testing.assert_array_equal(sesn_basis_for("disco"), DiscoModel(num_classes=2)._basis())
  np.testing.assert_array_equal(sesn_basis_for("hermite"), hermite_basis(15, effective_size=7))
  np.testing.assert_array_equal(sesn_basis_for("disco"), disco_basis())
  with pytest.raises(ValueError, match="hermite, disco"):
    sesn_basis_for("gabor")


@pytest.mark.parametrize("basis", ["hermite", "disco"])
def test_lift_is_a_conv_per_scale(basis, rng):
  """Scale s of the lifting layer is a valid correlation with sum_f weight[:, :, f] basis[f, s]."""
  kx, kw = jax.random.split(rng)
  x = jax.random.normal(kx, (2, 20, 20, 2))
  weight = jax.random.normal(kw, (3, 2, 49))
  bias = jnp.array([0.5, -1.0, 2.0])
  layer = SESConvZ2H(3, basis)
  y = jax.jit(layer.apply)({"params": {"weight": weight, "bias": bias}}, x)
  assert y.shape == (2, 4, 6, 6, 3)
  b = sesn_basis_for(basis)
  np.testing.assert_array_equal(y, sesn_lift(x, weight, bias, b))
  for s in (0, 3):
    kernel = jnp.einsum("ocf,fhw->hwco", weight, b[:, s])
    assert rel_err(y[:, s], conv2d(x, kernel, bias, impl="direct")) <= 1e-5


def test_scale_axis_is_not_mixed():
  """The H -> H layer treats each scale slice independently: zeroing one slice only changes its
  output."""
  layer = SESConvHH(4, "hermite")
  key = jax.random.PRNGKey(3)
  x = jax.random.normal(key, (1, 4, 20, 20, 2))
  weight = jax.random.normal(key, (4, 2, 1, 49))
  variables = {"params": {"weight": weight, "bias": jnp.ones((4,))}}
  apply = jax.jit(layer.apply)
  y = apply(variables, x)
  y_masked = apply(variables, x.at[:, 2].set(0.0))
  assert y.shape == (1, 4, 6, 6, 4)
  np.testing.assert_array_equal(y[:, [0, 1, 3]], y_masked[:, [0, 1, 3]])
  assert float(jnp.max(jnp.abs(y[:, 2] - y_masked[:, 2]))) > 0


# --- Parity with the authors' layers (tests/fixtures/peers, ISosnovik/sesn ses_conv.py) -------

SESN_PEERS = ["sesn_z2h_A", "sesn_z2h_B", "sesn_hh_A", "sesn_hh_B", "sesn_hh_B_ss1"]


def _peer_basis(args):
  """Basis A or B built by our code from the constructor arguments (not the stored buffer)."""
  if args["basis_type"] == "A":
    return hermite_basis_a(args["kernel_size"], args["scales"], args["effective_size"])
  return hermite_basis(args["kernel_size"], args["scales"], args["effective_size"],
                       mult=args["mult"], max_order=args["max_order"])


def _vjp_check(layer, arrays, params):
  """Output, grad_x and grad/<param> of ``layer`` at the stored input against the fixture, at
  1e-5 * max|ref| each; one jitted program."""

  @jax.jit
  def run(params, x, r):
    y, vjp = jax.vjp(lambda p, x: layer.apply({"params": p}, x), params, x)
    return y, vjp(r)

  y, (grad_p, grad_x) = run(params, nchw_to_nhwc(arrays["x"]), nchw_to_nhwc(arrays["r"]))
  errors = {"y": rel_err(y, nchw_to_nhwc(arrays["y"])),
            "grad_x": rel_err(grad_x, nchw_to_nhwc(arrays["grad_x"]))}
  for name, g in grad_p.items():
    ref = arrays[f"grad/{name}"]
    errors[f"grad/{name}"] = (rel_err(g, ref) if np.any(ref) else float(np.max(np.abs(g))))
  return errors


@pytest.mark.parametrize("name, impl", [(n, "auto") for n in SESN_PEERS] + [("sesn_hh_B", "direct")])
def test_matches_peer_layer(name, impl, fixtures_dir):
  """SESConv_Z2_H / SESConv_H_H (scale_size 2 and 1; bases A and B): outputs and gradients."""
  arrays, args, _ = load_peer(fixtures_dir, name)
  basis = _peer_basis(args)
  assert rel_err(basis, arrays["basis"]) <= 1e-5  # our basis equals the peer's buffer
  common = {"features": args["out_channels"], "basis": basis, "padding": args["padding"],
            "use_bias": args["bias"], "impl": impl}
  if "scale_size" in args:
    layer = SESConvHH(scale_size=args["scale_size"], **common)
  else:
    layer = SESConvZ2H(**common)
  params = {"weight": arrays["weight"], "bias": arrays["bias"]}
  shapes = jax.eval_shape(layer.init, jax.random.PRNGKey(0), nchw_to_nhwc(arrays["x"]))
  assert jax.tree.map(lambda a: a.shape, shapes["params"]) == jax.tree.map(np.shape, params)
  errors = _vjp_check(layer, arrays, params)
  assert max(errors.values()) <= 1e-5, errors


def test_matches_peer_1x1(fixtures_dir):
  """SESConv_H_H_1x1: a 1x1 conv shared by all scales; the bias exists but is never added, so its
  gradient is exactly zero (as stored)."""
  arrays, args, meta = load_peer(fixtures_dir, "sesn_hh_1x1")
  assert meta["unused_params_grad_is_zero"] == ["bias"]
  layer = SESConvHH1x1(args["out_channel"])
  params = {"weight": arrays["weight"], "bias": arrays["bias"]}
  shapes = jax.eval_shape(layer.init, jax.random.PRNGKey(0), nchw_to_nhwc(arrays["x"]))
  assert jax.tree.map(lambda a: a.shape, shapes["params"]) == jax.tree.map(np.shape, params)
  errors = _vjp_check(layer, arrays, params)
  assert errors.pop("grad/bias") == 0.0
  assert max(errors.values()) <= 1e-5, errors


def test_scale_size_two_reads_the_next_scale_and_zero_beyond(rng):
  """Output scale s of a scale_size-2 layer changes with input scales s and s + 1 only; the top
  scale sees zeros beyond the axis (its j = 1 tap contributes nothing)."""
  basis = hermite_basis_a(7, (1.0, 1.41, 2.0), 3)
  layer = SESConvHH(2, basis, padding=3, scale_size=2)
  kx, kw = jax.random.split(rng)
  x = jax.random.normal(kx, (1, 3, 10, 10, 2))
  weight = jax.random.normal(kw, (2, 2, 2, 9))
  bias = jnp.array([0.5, -1.0])

  @jax.jit
  def outputs(x, weight):
    apply = lambda x, w: layer.apply({"params": {"weight": w, "bias": bias}}, x)
    return (apply(x, weight), apply(x.at[:, 1].set(0.0), weight),  # scale 1 feeds outputs 0, 1
            apply(x, weight.at[:, :, 1].set(0.0)))                  # without the j = 1 tap

  y, y0, y_top = outputs(x, weight)
  assert float(jnp.max(jnp.abs(y[:, 0] - y0[:, 0]))) > 0
  assert float(jnp.max(jnp.abs(y[:, 1] - y0[:, 1]))) > 0
  np.testing.assert_array_equal(y[:, 2], y0[:, 2])
  np.testing.assert_allclose(y_top[:, 2], y[:, 2], rtol=1e-5, atol=1e-5)
