"""SS-CNN's scale-steerable layer (stir_jax.layers.scale_steerable) against the sesn repository's
ScaleConv_steering (fixture ss_scaleconv_steering) and its fixed basis buffers."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from stir_jax.layers import scale_steerable
from stir_jax.layers.conv import conv2d
from stir_jax.layers.scale_steerable import ScaleConvSteering, steerable_basis, steerable_kernels
from tests.helpers import load_peer, nchw_to_nhwc, rel_err
from tests.peer_checks import errors, outputs_and_vjp


def _layer(args, **kwargs):
  return ScaleConvSteering(args["out_channels"], args["kernel_size"][0],
                           tuple(args["ker_size_range"]), args["k_range"], args["phi_range"],
                           args["sigma_phi_range"], args["phase_range"], args["basis_scale"],
                           **kwargs)


def test_basis_equals_reference_buffers(fixtures_dir):
  """Built from the constructor arguments, not read: equal to the stored filter_real/filter_imag
  (11x11 grid of the layer fixture, 13x13 of the MNIST model) and effective_k."""
  arrays, args, meta = load_peer(fixtures_dir, "ss_scaleconv_steering")
  basis = _layer(args).basis()
  assert basis.real.shape == (3, 11, 11, 9)
  assert rel_err(basis.real, arrays["steer_conv.filter_real"]) <= 1e-6
  assert rel_err(basis.imag, arrays["steer_conv.filter_imag"]) <= 1e-6
  np.testing.assert_allclose(basis.effective_k, meta["derived"]["effective_k"], rtol=1e-12)
  model, _, _ = load_peer(fixtures_dir, "model_mnist_ss_28")
  basis13 = steerable_basis(13)  # the defaults are the MNIST model's arguments
  for layer in ("conv1", "conv2", "conv3"):
    assert rel_err(basis13.real, model[f"{layer}.steer_conv.filter_real"]) <= 1e-6
    assert rel_err(basis13.imag, model[f"{layer}.steer_conv.filter_imag"]) <= 1e-6


def test_layer_matches_reference(fixtures_dir):
  arrays, args, _ = load_peer(fixtures_dir, "ss_scaleconv_steering")
  layer = _layer(args)
  params = scale_steerable.from_torch(arrays)
  out, grads, (grad_x,) = outputs_and_vjp(lambda p, x: layer.apply({"params": p}, x), params,
                                          (nchw_to_nhwc(arrays["x"]),), nchw_to_nhwc(arrays["r"]))
  errs = errors({
      "y": (out, nchw_to_nhwc(arrays["y"])),
      "grad_x": (grad_x, nchw_to_nhwc(arrays["grad_x"])),
      "grad/mult_real": (grads["mult_real"], arrays["grad/steer_conv.mult_real"]),
      "grad/mult_imag": (grads["mult_imag"], arrays["grad/steer_conv.mult_imag"])})
  assert max(errs.values()) <= 1e-5, errs
  # const_real is never read: the reference's gradient is zero and this layer has no such param.
  np.testing.assert_array_equal(arrays["grad/steer_conv.const_real"], 0.0)
  assert set(params) == {"mult_real", "mult_imag"}


def test_fused_sizes_equal_one_convolution_per_size(rng):
  """The zero-padded kernels in one 'same' convolution (XLA or FFT) equal one correlation per size
  with padding (n - 1) / 2, then the first maximum over sizes and a ReLU."""
  basis = steerable_basis(9)
  kr, ki, kx = jax.random.split(rng, 3)
  mr, mi = jax.random.normal(kr, (3, 4, 2, 9)), jax.random.normal(ki, (3, 4, 2, 9))
  x = jax.random.normal(kx, (2, 12, 12, 2))
  sizes = (3, 5, 9)

  @jax.jit
  def run(x, mr, mi):
    kernels = steerable_kernels(mr, mi, basis, sizes, 5).reshape(9, 9, 2, 3, 4)
    per_size = []
    for j, n in enumerate(sizes):
      c = (9 - n) // 2
      assert_zero = jnp.abs(kernels[..., j, :]).sum() - jnp.abs(
          kernels[c:9 - c, c:9 - c, :, j, :]).sum()
      per_size.append((conv2d(x, kernels[c:9 - c, c:9 - c, :, j, :], padding=n // 2,
                              impl="xla"), assert_zero))
    outs = [scale_steerable.scale_steerable_conv2d(x, mr, mi, basis, sizes, 5, impl=impl)
            for impl in ("xla", "fft")]
    return per_size, outs

  per_size, (y_xla, y_fft) = run(x, mr, mi)
  assert all(float(z) == 0.0 for _, z in per_size)  # size n lives in its centre crop
  expected = jax.nn.relu(jnp.max(jnp.stack([y for y, _ in per_size]), axis=0))
  assert rel_err(y_xla, expected) <= 1e-5
  assert rel_err(y_fft, expected) <= 1e-5


def test_steering_at_the_nominal_size_is_the_plain_combination(rng):
  """At n = kernel_size the steering angle is 0: W = sum mult_real * real - mult_imag * imag."""
  basis = steerable_basis(7)
  kr, ki = jax.random.split(rng)
  mr, mi = jax.random.normal(kr, (3, 2, 1, 9)), jax.random.normal(ki, (3, 2, 1, 9))
  w = jax.jit(lambda a, b: steerable_kernels(a, b, basis, (7,), 7))(mr, mi)
  plain = (np.einsum("koib,khwb->hwio", mr, basis.real)
           - np.einsum("koib,khwb->hwio", mi, basis.imag))
  assert rel_err(w, plain) <= 1e-6


def test_init_and_errors(rng):
  layer = ScaleConvSteering(8, 7, (5, 7, 9))
  params = jax.jit(layer.init)(rng, jnp.zeros((1, 16, 16, 3)))["params"]
  bound = np.sqrt(2 / (9 * 8 * 3))
  for p in params.values():
    assert p.shape == (3, 8, 3, 9)
    assert 0.9 * bound < float(jnp.max(jnp.abs(p))) <= bound
  with pytest.raises(ValueError, match="odd"):
    steerable_basis(8)
  with pytest.raises(ValueError, match="kernel sizes"):
    steerable_kernels(params["mult_real"], params["mult_imag"], steerable_basis(9), (4, 9), 7)
