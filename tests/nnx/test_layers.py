"""stir_jax.nnx against stir_jax.layers: every NNX module equals its Linen twin and its pure function
on the same parameters, draws its parameters from the same distributions, and reproduces the
reference and peer fixtures (outputs and gradients, at the tolerances of tests/layers)."""
from flax import nnx
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from stir_jax import layers as L
from stir_jax import nnx as N
from stir_jax.layers.sesn_basis import hermite_basis, hermite_basis_a
from tests.helpers import load_peer, nchw_to_nhwc, rel_err
from tests.nnx.twins import abstract, assert_twins, max_error, params, set_params

LINEN_MODULES = sorted(n for n in L.__all__
                       if isinstance(getattr(L, n), type) and issubclass(getattr(L, n), nn.Module))
# The Linen SiConv2d's and siconv2d's name for the interpolation (mode, renamed interpolation).
INTERP = "interpolation" if "interpolation" in L.SiConv2d.__dataclass_fields__ else "mode"


def _normal(seed, shape):
  return jnp.asarray(np.random.default_rng(seed).standard_normal(shape), jnp.float32)


def _hwio(w):
  return np.asarray(w).transpose(2, 3, 1, 0)


def test_every_linen_module_has_an_nnx_twin():
  assert LINEN_MODULES == sorted(N.__all__)
  for name in N.__all__:
    assert issubclass(getattr(N, name), nnx.Module) and getattr(N, name).__name__ == name


# --- Parameter initialisation: the Linen twin's distributions.

_INIT_CASES = {  # name: (NNX module, Linen module, input shapes)
    "SiConv2d": (lambda r: N.SiConv2d(4, 128, kernel_size=5, rngs=r), L.SiConv2d(128, 5),
                 [(1, 16, 16, 4)]),
    "XuConv": (lambda r: N.XuConv(10, 64, kernel_size=5, kernel_sizes=(3, 5), rngs=r),
               L.XuConv(64, 5, (3, 5)), [(1, 16, 16, 10)]),
    "XuSesnConv": (lambda r: N.XuSesnConv(4, 64, kernel_size=5, scales=(0.7, 1.0), rngs=r),
                   L.XuSesnConv(64, 5, (0.7, 1.0)), [(1, 16, 16, 4)]),
    "KanazawaConv": (lambda r: N.KanazawaConv(4, 128, kernel_size=5, rngs=r),
                     L.KanazawaConv(128, 5), [(1, 16, 16, 4)]),
    "SESConvZ2H": (lambda r: N.SESConvZ2H(4, 128, rngs=r), L.SESConvZ2H(128), [(1, 16, 16, 4)]),
    "SESConvHH": (lambda r: N.SESConvHH(4, 128, scale_size=2, basis="disco", rngs=r),
                  L.SESConvHH(128, "disco", scale_size=2), [(1, 4, 16, 16, 4)]),
    "SESConvHH1x1": (lambda r: N.SESConvHH1x1(8, 128, rngs=r), L.SESConvHH1x1(128),
                     [(1, 2, 4, 4, 8)]),
    "Dconv2d": (lambda r: N.Dconv2d(4, 128, kernel_size=(2, 3, 3), use_bias=True, rngs=r),
                L.Dconv2d(128, (2, 3, 3), use_bias=True), [(1, 2, 8, 8, 4)]),
    "ScaleConvSteering": (lambda r: N.ScaleConvSteering(4, 32, rngs=r), L.ScaleConvSteering(32),
                          [(1, 16, 16, 4)]),
    "SEVFScalarConv": (lambda r: N.SEVFScalarConv(4, 64, kernel_size=5, rngs=r),
                       L.SEVFScalarConv(64, 5), [(1, 16, 16, 4)]),
    "SEVFVectorConv": (lambda r: N.SEVFVectorConv(4, 64, kernel_size=5, rngs=r),
                       L.SEVFVectorConv(64, 5), [(1, 16, 16, 4)] * 2),
    "GaussDerConv": (lambda r: N.GaussDerConv(4, 64, (1.0, 2.0), rngs=r),
                     L.GaussDerConv(64, (1.0, 2.0)), [(1, 16, 16, 4)]),
    "ScalePool": (lambda r: N.ScalePool("soft", learnable_temperature=True, rngs=r),
                  L.ScalePool("soft", learnable_temperature=True), [(1, 3, 4, 4, 2)]),
}


def _get(tree, path):
  for key in path:
    tree = tree[key.key]
  return tree


@pytest.mark.slow  # about 2 s of CPU per module (each new parameter shape compiles its draw)
@pytest.mark.parametrize("name", sorted(_INIT_CASES))
def test_initialisers_draw_the_linen_distributions(name):
  """The same parameter names and shapes as the Linen twin; constants (zeros, ones) equal; drawn
  parameters (100 and more values each) with the Linen draw's spread (std within 20%, largest
  magnitude within 30%)."""
  make, linen, shapes = _INIT_CASES[name]
  ours = params(make(nnx.Rngs(1)))
  if name == "KanazawaConv":
    ours = {"conv": ours}  # the Linen module keeps them in a submodule
  theirs = linen.lazy_init(jax.random.PRNGKey(0),
                           *[jax.ShapeDtypeStruct(s, jnp.float32) for s in shapes])["params"]
  assert jax.tree.map(np.shape, ours) == jax.tree.map(np.shape, theirs)
  for path, a in jax.tree_util.tree_leaves_with_path(ours):
    a, b = np.asarray(a), np.asarray(_get(theirs, path))
    assert a.dtype == b.dtype == np.float32
    if np.all(b == b.flat[0]):
      np.testing.assert_array_equal(a, b)
      continue
    assert a.size >= 100, path
    assert 0.8 < a.std() / b.std() < 1.25, (path, a.std(), b.std())
    assert 0.7 < np.abs(a).max() / np.abs(b).max() < 1.43, (path, np.abs(a).max(),
                                                             np.abs(b).max())


# --- SiConv2d and ScalePool: the reference fixtures, the Linen module and the pure functions.

@pytest.mark.parametrize("interpolation", L.MODES)
def test_siconv2d_reference_fixtures(interpolation, load_fixture):
  f = load_fixture(f"siconv_{interpolation}")
  x = f["x"].transpose(0, 2, 3, 1)
  layer = abstract(lambda r: N.SiConv2d(3, 4, kernel_size=7, interpolation=interpolation,
                                         rngs=r))
  set_params(layer, kernel=_hwio(f["weights"]), bias=f["bias"])
  s = int(f["num_scales"])
  out = assert_twins(layer, L.SiConv2d(4, 7, **{INTERP: interpolation}), (x,),
                     lambda p, x: L.siconv2d(x, p["kernel"], p["bias"], num_scales=s,
                                             **{INTERP: interpolation}))
  assert out.shape == (2, 13, 26, 26, 4)
  assert rel_err(out, f["out"].transpose(0, 2, 3, 4, 1)) <= 1e-5


def test_siconv2d_pixel_pool_is_exactly_the_fused_function():
  x = _normal(0, (2, 32, 32, 1))
  layer = N.SiConv2d(1, 8, kernel_size=7, pool="pixel", rngs=nnx.Rngs(0))
  pooled, indices = layer(x)
  ref_pooled, ref_indices = L.siconv2d_pool(x, layer.kernel[...], layer.bias[...],
                                            num_scales=L.num_scales_for(32, 7), pool="pixel")
  assert pooled.shape == indices.shape == (2, 26, 26, 8) and indices.dtype == jnp.int32
  bound = 1 / np.sqrt(7 * 7)  # PyTorch's init, as the Linen SiConv2d
  assert 0.8 * bound < np.abs(layer.kernel[...]).max() <= bound
  np.testing.assert_array_equal(pooled, ref_pooled)
  np.testing.assert_array_equal(indices, ref_indices)
  assert_twins(layer, L.SiConv2d(8, 7, pool="pixel"), (x,),
               lambda p, x: L.siconv2d_pool(x, p["kernel"], p["bias"], num_scales=13,
                                            pool="pixel"))


def test_siconv2d_options_reach_the_function():
  """num_scales, impl, precision and dtype pass through; mode= is the deprecated alias."""
  x = _normal(1, (1, 11, 12, 2))
  with pytest.warns(DeprecationWarning):
    layer = N.SiConv2d(2, 3, kernel_size=5, mode="area", impl="direct", num_scales=4,
                       dtype=jnp.bfloat16, precision="default", rngs=nnx.Rngs(0))
  assert layer.interpolation == "area"
  out = assert_twins(
      layer, L.SiConv2d(3, 5, num_scales=4, impl="direct", dtype=jnp.bfloat16,
                        precision="default", **{INTERP: "area"}), (x,),
      lambda p, x: L.siconv2d(x.astype(jnp.bfloat16), p["kernel"].astype(jnp.bfloat16),
                              p["bias"].astype(jnp.bfloat16), num_scales=4, impl="direct",
                              precision="default", **{INTERP: "area"}))
  assert out.dtype == jnp.bfloat16 and out.shape == (1, 4, 7, 8, 3)
  with pytest.raises(ValueError, match="scales"):
    N.SiConv2d(2, 3, kernel_size=5, num_scales=3, rngs=nnx.Rngs(0))(x)
  with pytest.raises(ValueError, match="built for 2 input channels"):
    layer(jnp.zeros((1, 11, 12, 3)))


@pytest.mark.parametrize("mode", ["pixel", "slice", "energy"])
def test_scale_pool_reference_fixtures(mode, load_fixture):
  f = load_fixture(f"scalepool_{mode}")
  pool = N.ScalePool(mode)
  assert params(pool) == {}
  for suffix in ("", "_ties"):
    y = f["x" + suffix].transpose(0, 2, 3, 4, 1)
    pooled, indices = assert_twins(pool, L.ScalePool(mode), (y,),
                                   lambda p, y: L.scale_pool(y, mode))
    ref_idx = f["indices" + suffix]
    assert rel_err(pooled, f["out" + suffix].transpose(0, 2, 3, 1)) <= 1e-6
    np.testing.assert_array_equal(indices, ref_idx.transpose(0, 2, 3, 1) if ref_idx.ndim == 4
                                  else ref_idx)


def test_scale_pool_learnable_temperature():
  y = _normal(2, (2, 4, 5, 5, 3))
  pool = N.ScalePool("soft", learnable_temperature=True)
  set_params(pool, log_temperature=0.3)
  assert_twins(pool, L.ScalePool("soft", learnable_temperature=True), (y,),
               lambda p, y: L.scale_pool(y, "soft", jnp.exp(p["log_temperature"])))
  with pytest.raises(ValueError, match="only meaningful"):
    N.ScalePool("pixel", learnable_temperature=True)
  with pytest.raises(ValueError, match="unknown scale pooling mode"):
    N.ScalePool("mean")


# --- Xu and Kanazawa.

def test_xu_conv_initial_and_grouped():
  x = _normal(3, (1, 10, 10, 2))
  sizes = (3, 5, 7)
  first = N.XuConv(2, 3, kernel_size=5, kernel_sizes=sizes, initial=True, rngs=nnx.Rngs(0))
  y1, kernels = assert_twins(first, L.XuConv(3, 5, sizes, initial=True), (x,),
                             lambda p, x: (L.xu_conv2d(x, p["kernel"], sizes),
                                           L.xu_kernels(p["kernel"], sizes)))
  assert y1.shape == (1, 10, 10, 9) and kernels.shape == (7, 7, 2, 9)
  second = N.XuConv(9, 4, kernel_size=3, kernel_sizes=sizes, rngs=nnx.Rngs(1))
  assert second.kernel[...].shape == (3, 3, 3, 4)
  y2, _ = assert_twins(second, L.XuConv(4, 3, sizes), (y1,),
                       lambda p, x: (L.xu_conv2d(x, p["kernel"], sizes, grouped=True),
                                     L.xu_kernels(p["kernel"], sizes)))
  assert y2.shape == (1, 10, 10, 12)
  with pytest.raises(ValueError, match="not a multiple"):
    N.XuConv(16, 4, rngs=nnx.Rngs(0))


def _peer_check(layer, linen, inputs, pure, a, cotangent, out_keys, grad_x_keys, grad_refs,
                to_linen=lambda p: p):
  """assert_twins with the VJP, then the outputs, input gradients and the parameter gradients
  ``{ours: reference}`` against the fixture ``a`` (NCHW keys), each at 1e-5 * max|ref|."""
  out, (grads, grad_inputs) = assert_twins(layer, linen, inputs, pure, to_linen,
                                           cotangent=cotangent)
  outs = out if isinstance(out, tuple) else (out,)
  ours = dict(zip(out_keys, outs)) | dict(zip(grad_x_keys, grad_inputs)) | {
      f"grad/{k}": grads[k] for k in grad_refs}
  refs = {k: nchw_to_nhwc(a[k]) for k in out_keys + grad_x_keys} | {
      f"grad/{k}": ref for k, ref in grad_refs.items()}
  worst, errs = max_error(ours, refs)
  assert worst <= 1e-5, errs
  return grads


@pytest.mark.parametrize("name", ["xu_siconv2d_single_input", "xu_siconv2d_multiscale_input"])
def test_xu_sesn_conv_peer_fixtures(name, fixtures_dir):
  a, args, _ = load_peer(fixtures_dir, name)
  scales, groups = tuple(args["scales"]), args["num_input_scales"]
  x = nchw_to_nhwc(a["x"])
  layer = abstract(lambda r: N.XuSesnConv(
      x.shape[-1], args["out_channel"], kernel_size=args["kernel_size"], scales=scales,
      num_input_scales=groups, rngs=r))
  set_params(layer, kernel=_hwio(a["weight"]))
  _peer_check(layer, L.XuSesnConv(args["out_channel"], args["kernel_size"], scales, groups), (x,),
              lambda p, x: L.xu_sesn_conv2d(x, p["kernel"], scales, groups), a,
              nchw_to_nhwc(a["r"]), ["y"], ["grad_x"], {"kernel": _hwio(a["grad/weight"])})


def test_kanazawa_conv_peer_fixture(fixtures_dir):
  a, args, _ = load_peer(fixtures_dir, "kanazawa_siconv2d")
  scales, pad = tuple(args["scales"]), args["padding"]
  layer = abstract(lambda r: N.KanazawaConv(2, args["out_channels"], kernel_size=args["kernel_size"],
                                            scales=scales, padding=pad, rngs=r))
  set_params(layer, kernel=_hwio(a["weight"]), bias=a["bias"])
  _peer_check(layer, L.KanazawaConv(args["out_channels"], args["kernel_size"], scales,
                                    padding=pad), (nchw_to_nhwc(a["x"]),),
              lambda p, x: L.kanazawa_conv2d(x, p["kernel"], p["bias"], scales, padding=pad), a,
              nchw_to_nhwc(a["r"]), ["y"], ["grad_x"],
              {"kernel": _hwio(a["grad/weight"]), "bias": a["grad/bias"]},
              to_linen=lambda p: {"conv": p})


# --- SESN, DSS, SS-CNN.

def _sesn_basis(args):
  if args["basis_type"] == "A":
    return hermite_basis_a(args["kernel_size"], args["scales"], args["effective_size"])
  return hermite_basis(args["kernel_size"], args["scales"], args["effective_size"],
                       mult=args["mult"], max_order=args["max_order"])


@pytest.mark.parametrize("name", ["sesn_z2h_A", "sesn_z2h_B", "sesn_hh_A", "sesn_hh_B",
                                  "sesn_hh_B_ss1"])
def test_sesn_peer_fixtures(name, fixtures_dir):
  a, args, _ = load_peer(fixtures_dir, name)
  basis = _sesn_basis(args)
  pad = args["padding"]
  common = dict(basis=basis, padding=pad, use_bias=args["bias"])
  if "scale_size" in args:
    layer = abstract(lambda r: N.SESConvHH(2, args["out_channels"],
                                           scale_size=args["scale_size"], **common, rngs=r))
    linen = L.SESConvHH(args["out_channels"], scale_size=args["scale_size"], **common)
    pure = L.sesn_scale_conv
  else:
    layer = abstract(lambda r: N.SESConvZ2H(2, args["out_channels"], **common, rngs=r))
    linen = L.SESConvZ2H(args["out_channels"], **common)
    pure = L.sesn_lift
  set_params(layer, weight=a["weight"], bias=a["bias"])
  assert set(nnx.to_pure_dict(nnx.state(layer))) == {"weight", "bias"}  # the basis is no state
  _peer_check(layer, linen, (nchw_to_nhwc(a["x"]),),
              lambda p, x: pure(x, p["weight"], p["bias"], basis, padding=pad), a,
              nchw_to_nhwc(a["r"]), ["y"], ["grad_x"],
              {"weight": a["grad/weight"], "bias": a["grad/bias"]})


def test_sesn_1x1_peer_fixture(fixtures_dir):
  a, args, _ = load_peer(fixtures_dir, "sesn_hh_1x1")
  layer = abstract(lambda r: N.SESConvHH1x1(2, args["out_channel"], rngs=r))
  set_params(layer, weight=a["weight"], bias=a["bias"])
  grads = _peer_check(layer, L.SESConvHH1x1(args["out_channel"]), (nchw_to_nhwc(a["x"]),),
                      lambda p, x: L.sesn_conv1x1(x, p["weight"]), a, nchw_to_nhwc(a["r"]),
                      ["y"], ["grad_x"], {"weight": a["grad/weight"]})
  np.testing.assert_array_equal(a["grad/bias"], 0.0)
  np.testing.assert_array_equal(grads["bias"], 0.0)  # never added, as in the reference


def test_bessel_peer_fixture(fixtures_dir):
  a, args, _ = load_peer(fixtures_dir, "dss_besselconv2d")
  kwargs = dict(base=args["base"], zero_scale=args["zero_scale"])
  s = args["n_scales"]
  layer = N.BesselConv2d(s, **kwargs)
  assert nnx.to_pure_dict(nnx.state(layer)) == {}
  _peer_check(layer, L.BesselConv2d(s, **kwargs), (nchw_to_nhwc(a["x"]),),
              lambda p, x: L.dss_besselconv2d(x, s, **kwargs), a, nchw_to_nhwc(a["r"]), ["y"],
              ["grad_x"], {})


def test_dconv2d_peer_fixture(fixtures_dir):
  a, args, _ = load_peer(fixtures_dir, "dss_dconv2d")
  base, s_out = args["base"], args["io_scales"][0]
  kwargs = dict(kernel_size=tuple(args["kernel_size"]), base=base, num_out_scales=s_out,
                use_bias=args["bias"])
  layer = abstract(lambda r: N.Dconv2d(2, args["out_channels"], **kwargs, rngs=r))
  set_params(layer, weights=a["weights"], bias=a["bias"])
  _peer_check(layer, L.Dconv2d(args["out_channels"], **kwargs), (nchw_to_nhwc(a["x"]),),
              lambda p, x: L.dss_dconv2d(x, p["weights"], p["bias"], base, s_out), a,
              nchw_to_nhwc(a["r"]), ["y"], ["grad_x"],
              {"weights": a["grad/weights"], "bias": a["grad/bias"]})
  assert set(params(abstract(lambda r: N.Dconv2d(2, 3, rngs=r)))) == {"weights"}  # no bias


def test_scale_steering_peer_fixture(fixtures_dir):
  a, args, _ = load_peer(fixtures_dir, "ss_scaleconv_steering")
  kwargs = dict(kernel_size=args["kernel_size"][0], kernel_sizes=tuple(args["ker_size_range"]),
                k_range=args["k_range"], phi_range=args["phi_range"],
                sigma_phi_range=args["sigma_phi_range"], phase_range=args["phase_range"],
                basis_scale=args["basis_scale"])
  layer = abstract(lambda r: N.ScaleConvSteering(2, args["out_channels"], **kwargs, rngs=r))
  set_params(layer, mult_real=a["steer_conv.mult_real"], mult_imag=a["steer_conv.mult_imag"])
  basis = layer.basis()
  _peer_check(layer, L.ScaleConvSteering(args["out_channels"], **kwargs), (nchw_to_nhwc(a["x"]),),
              lambda p, x: L.scale_steerable_conv2d(x, p["mult_real"], p["mult_imag"], basis,
                                                    kwargs["kernel_sizes"],
                                                    kwargs["kernel_size"]), a,
              nchw_to_nhwc(a["r"]), ["y"], ["grad_x"],
              {"mult_real": a["grad/steer_conv.mult_real"],
               "mult_imag": a["grad/steer_conv.mult_imag"]})


# --- SEVF.

def _sevf_kwargs(args):
  return dict(kernel_size=args["kernel_size"], padding=args["padding"],
              n_scales_small=args["n_scales_small"], n_scales_big=args["n_scales_big"],
              base=args["base"], angle_range=args["angle_range"])


def test_sevf_scalar_peer_fixture(fixtures_dir):
  a, args, _ = load_peer(fixtures_dir, "sevf_scaleconv_scalar")
  kwargs = _sevf_kwargs(args)
  layer = abstract(lambda r: N.SEVFScalarConv(2, args["out_channels"], **kwargs, rngs=r))
  set_params(layer, kernel=_hwio(a["weight"]))
  scales, angles = layer.scales_and_angles()
  _peer_check(layer, L.SEVFScalarConv(args["out_channels"], **kwargs), (nchw_to_nhwc(a["x"]),),
              lambda p, x: L.sevf_scalar_conv2d(x, p["kernel"], scales, angles,
                                                padding=kwargs["padding"]), a,
              (nchw_to_nhwc(a["r_u"]), nchw_to_nhwc(a["r_v"])), ["y_u", "y_v"], ["grad_x"],
              {"kernel": _hwio(a["grad/weight"])})


def test_sevf_vector_peer_fixture(fixtures_dir):
  a, args, _ = load_peer(fixtures_dir, "sevf_scaleconv_vector")
  kwargs = _sevf_kwargs(args)
  layer = abstract(lambda r: N.SEVFVectorConv(2, args["out_channels"], **kwargs, rngs=r))
  set_params(layer, kernel_u=_hwio(a["weight_u"]), kernel_v=_hwio(a["weight_v"]))
  scales, angles = layer.scales_and_angles()
  _peer_check(layer, L.SEVFVectorConv(args["out_channels"], **kwargs),
              (nchw_to_nhwc(a["x_u"]), nchw_to_nhwc(a["x_v"])),
              lambda p, u, v: L.sevf_vector_conv2d(u, v, p["kernel_u"], p["kernel_v"], scales,
                                                   angles, padding=kwargs["padding"]), a,
              (nchw_to_nhwc(a["r_u"]), nchw_to_nhwc(a["r_v"])), ["y_u", "y_v"],
              ["grad_x_u", "grad_x_v"],
              {"kernel_u": _hwio(a["grad/weight_u"]), "kernel_v": _hwio(a["grad/weight_v"])})


def test_vector_max_pool():
  u, v = _normal(4, (2, 7, 7, 3)), _normal(5, (2, 7, 7, 3))
  pool = N.VectorMaxPool(4, padding=2)
  assert nnx.to_pure_dict(nnx.state(pool)) == {}
  out = assert_twins(pool, L.VectorMaxPool(4, 2), (u, v),
                     lambda p, u, v: L.vector_max_pool(u, v, 4, 2))
  assert out[0].shape == (2, 2, 2, 3)


def test_vector_batch_norm_train_eval_and_views():
  u, v = _normal(6, (4, 5, 5, 3)), _normal(7, (4, 5, 5, 3))
  bn = N.VectorBatchNorm(3)
  assert params(bn) == {} and bn.use_running_average is False
  assert jax.tree.map(np.shape, nnx.to_pure_dict(nnx.state(bn, nnx.BatchStat))) == {
      "running_var": (3,)}
  running = jnp.array([0.5, 1.0, 2.0])
  bn.running_var[...] = running
  linen = L.VectorBatchNorm()
  # Train mode (the default, as nnx.BatchNorm): batch variance, running variance updated.
  tu, tv = bn(u, v)
  (lu, lv), state = linen.apply({"batch_stats": {"running_var": running}}, u, v, train=True,
                                mutable=["batch_stats"])
  np.testing.assert_array_equal(tu, lu)
  np.testing.assert_array_equal(tv, lv)
  np.testing.assert_array_equal(bn.running_var[...], state["batch_stats"]["running_var"])
  mag = np.sqrt(np.asarray(u) ** 2 + np.asarray(v) ** 2)
  n = 4 * 5 * 5
  np.testing.assert_allclose(bn.running_var[...],
                             0.5 * running + 0.5 * mag.var(axis=(0, 1, 2)) * n / (n - 1),
                             rtol=1e-5)
  # Eval: the call's argument, nnx.view and model.eval() all read the running variance.
  updated = bn.running_var[...]
  expected = linen.apply({"batch_stats": {"running_var": updated}}, u, v)
  for out in (bn(u, v, use_running_average=True), nnx.view(bn, use_running_average=True)(u, v)):
    np.testing.assert_array_equal(out[0], expected[0])
    np.testing.assert_array_equal(out[1], expected[1])
  bn.eval()
  assert bn.use_running_average is True
  np.testing.assert_array_equal(bn(u, v)[0], expected[0])
  np.testing.assert_array_equal(bn.running_var[...], updated)  # eval leaves it alone
  bn.train()
  bn(u, v)
  assert not np.array_equal(bn.running_var[...], updated)
  with pytest.raises(ValueError, match="built for 3 input channels"):
    bn(u[..., :2], v[..., :2])


# --- Gaussian derivatives and the resampling layers.

def test_gauss_der_conv():
  sigmas = L.scale_series(1.0, 2 ** 0.5, 3)
  x = _normal(8, (1, 12, 12, 2))
  layer = N.GaussDerConv(2, 4, sigmas, rngs=nnx.Rngs(0))
  set_params(layer, bias=_normal(9, (4,)))
  out = assert_twins(layer, L.GaussDerConv(4, sigmas), (x,),
                     lambda p, x: L.gaussian_derivative_conv(x, p["kernel"], p["bias"], sigmas))
  assert out.shape == (1, 3, 12, 12, 4)
  no_zero = abstract(lambda r: N.GaussDerConv(2, 4, sigmas, zero_order=False, use_bias=False,
                                              rngs=r))
  assert jax.tree.map(np.shape, params(no_zero)) == {"kernel": (5, 2, 4)}


def test_gaussian_pyramid_and_affine_warp():
  x = _normal(10, (2, 16, 16, 3))
  pyramid, warp = N.GaussianPyramid(3), N.AffineWarp()
  assert nnx.to_pure_dict(nnx.state(pyramid)) == nnx.to_pure_dict(nnx.state(warp)) == {}
  levels = assert_twins(pyramid, L.GaussianPyramid(3), (x,),
                        lambda p, x: L.gaussian_pyramid(x, 3))
  assert [p.shape[1] for p in levels] == [16, 8, 4]
  theta = jnp.asarray([[[0.9, 0.1, 0.05], [-0.1, 1.1, 0.0]], [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]])
  out = assert_twins(warp, L.AffineWarp(), (x, theta), lambda p, x, t: L.affine_warp(x, t))
  np.testing.assert_allclose(out[1], x[1], atol=1e-6)  # identity theta


# --- Transformations: grad and jit through an NNX SiConv2d.

def test_grad_and_jit_through_siconv2d():
  x = _normal(11, (2, 12, 12, 1))
  layer = N.SiConv2d(1, 4, kernel_size=5, pool="pixel", impl="direct", rngs=nnx.Rngs(0))

  def loss(model, x):
    pooled, _ = model(x)
    return jnp.mean(jnp.tanh(pooled) ** 2)

  grads = nnx.grad(loss)(layer, x)
  ref = jax.grad(lambda w, b: jnp.mean(jnp.tanh(L.siconv2d_pool(
      x, w, b, num_scales=4, impl="direct")[0]) ** 2), argnums=(0, 1))(layer.kernel[...],
                                                                      layer.bias[...])
  assert isinstance(grads, nnx.State) and set(nnx.to_pure_dict(grads)) == {"kernel", "bias"}
  np.testing.assert_allclose(grads["kernel"][...], ref[0], rtol=1e-5, atol=1e-8)
  np.testing.assert_allclose(grads["bias"][...], ref[1], rtol=1e-5, atol=1e-8)
  assert np.abs(ref[0]).max() > 0

  traces = []

  @nnx.jit
  def step(model, x):
    traces.append(None)
    value, grads = nnx.value_and_grad(loss)(model, x)
    for name in ("kernel", "bias"):
      getattr(model, name)[...] -= 0.5 * grads[name][...]
    return value

  before = float(loss(layer, x))
  assert float(step(layer, x)) == pytest.approx(before, rel=1e-5)
  assert float(step(layer, x)) < before  # the first update reached the module
  assert len(traces) == 1
