"""SS-CNN's scale-steerable layer (stir_jax.layers.scale_steerable) against the sesn repository's
ScaleConv_steering (fixture ss_scaleconv_steering) and its fixed basis buffers."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from stir_jax.layers import scale_steerable
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


def _correlate_same(x, kernel):
  """NumPy 'same' cross-correlation with zero padding: x (B, H, W, I), kernel (n, n, I, O)."""
  n = kernel.shape[0]
  b, h, w, _ = x.shape
  padded = np.pad(x, ((0, 0), (n // 2, n // 2), (n // 2, n // 2), (0, 0)))
  out = np.zeros((b, h, w, kernel.shape[3]))
  for dy in range(n):
    for dx in range(n):
      out += np.einsum("bhwi,io->bhwo", padded[:, dy:dy + h, dx:dx + w], kernel[dy, dx])
  return out


def test_fused_sizes_equal_one_convolution_per_size():
  """The zero-padded kernels in one 'same' convolution (XLA or FFT) equal one correlation per size
  with padding (n - 1) / 2 (each size's kernel lives in its centre crop), then the first maximum
  over sizes and a ReLU."""
  basis = steerable_basis(9)
  gen = np.random.default_rng(0)
  mr, mi = gen.standard_normal((2, 3, 4, 2, 9), np.float32)
  x = gen.standard_normal((2, 12, 12, 2), np.float32)
  sizes = (3, 5, 9)
  kernels, y_xla, y_fft = jax.jit(lambda x, mr, mi: [
      steerable_kernels(mr, mi, basis, sizes, 5)] + [
          scale_steerable.scale_steerable_conv2d(x, mr, mi, basis, sizes, 5, impl=impl)
          for impl in ("direct", "fft")])(x, mr, mi)
  kernels = np.asarray(kernels, np.float64).reshape(9, 9, 2, 3, 4)
  per_size = []
  for j, n in enumerate(sizes):
    c = (9 - n) // 2
    crop = kernels[c:9 - c, c:9 - c, :, j]
    assert np.abs(kernels[..., j, :]).sum() == np.abs(crop).sum()  # zero outside the crop
    per_size.append(_correlate_same(np.asarray(x, np.float64), crop))
  expected = np.maximum(np.max(per_size, axis=0), 0)
  assert rel_err(y_xla, expected) <= 1e-5
  assert rel_err(y_fft, expected) <= 1e-5


def test_steering_at_the_nominal_size_is_the_plain_combination():
  """At n = kernel_size the steering angle is 0: W = sum mult_real * real - mult_imag * imag."""
  basis = steerable_basis(7)
  mr, mi = np.random.default_rng(1).standard_normal((2, 3, 2, 1, 9), np.float32)
  w = jax.jit(lambda a, b: steerable_kernels(a, b, basis, (7,), 7))(mr, mi)
  plain = (np.einsum("koib,khwb->hwio", mr, basis.real)
           - np.einsum("koib,khwb->hwio", mi, basis.imag))
  assert rel_err(w, plain) <= 1e-6


def test_init_and_errors(rng):
  """The reference's init bound sqrt(2 / (B in out)) (its filters have unit norm), the parameter
  shapes, and the argument checks."""
  layer = ScaleConvSteering(8, 7, (5, 7, 9))
  params = jax.eval_shape(layer.init, rng, jnp.zeros((1, 16, 16, 3)))["params"]
  assert {k: v.shape for k, v in params.items()} == {"mult_real": (3, 8, 3, 9),
                                                     "mult_imag": (3, 8, 3, 9)}
  bound = np.sqrt(2 / (9 * 8 * 3))
  draw = jax.jit(scale_steerable._coefficient_init(9, 8 * 3), static_argnums=1)(
      jax.random.key(0, impl="rbg"), (3, 8, 3, 9))  # rbg: compiles in a fraction of threefry
  assert 0.9 * bound < float(jnp.max(jnp.abs(draw))) <= bound
  with pytest.raises(ValueError, match="odd"):
    steerable_basis(8)
  with pytest.raises(ValueError, match="kernel sizes"):
    steerable_kernels(jnp.zeros((3, 8, 3, 9)), jnp.zeros((3, 8, 3, 9)), steerable_basis(9),
                      (4, 9), 7)
