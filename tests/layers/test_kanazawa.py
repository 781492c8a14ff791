"""Kanazawa et al.'s SI-ConvNet layer (stir_jax.layers.kanazawa), the paper's version and the sesn
repository's (padding)."""
import jax
import jax.numpy as jnp
import numpy as np

from stir_jax.layers import kanazawa
from stir_jax.layers.conv import conv2d
from stir_jax.layers.kanazawa import SCALES, KanazawaConv, kanazawa_conv2d
from stir_jax.layers.resample import apply_separable, center_pad_crop_matrix, rescale_matrix
from stir_jax.layers.resample import scaled_size
from tests.helpers import load_peer, nchw_to_nhwc
from tests.peer_checks import errors, outputs_and_vjp


def test_rescaled_sizes():
  assert [scaled_size(64, s) for s in SCALES] == [40, 50, 64, 80, 101, 128]
  assert [scaled_size(58, 1 / s) for s in SCALES] == [92, 73, 58, 46, 36, 28]
  assert [scaled_size(58, s) for s in SCALES] == [36, 46, 58, 73, 92, 116]
  assert [scaled_size(52, 1 / s) for s in SCALES] == [82, 65, 52, 41, 32, 25]


def test_windowed_layer_equals_full_computation(rng):
  """Convolving only the window that the rescale back reads changes nothing."""
  kx, kw = jax.random.split(rng)
  x = jax.random.normal(kx, (2, 40, 40, 3))
  layer = KanazawaConv(features=4, kernel_size=5)
  variables = layer.init(kw, x)
  kernel = variables["params"]["conv"]["kernel"]
  bias = variables["params"]["conv"]["bias"]
  conv = lambda z: jax.lax.conv_general_dilated(
      z, kernel, (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC"),
      precision=jax.lax.Precision.HIGHEST) + bias
  full = []
  for s in SCALES:
    y = conv(apply_separable(x, rescale_matrix(40, s), rescale_matrix(40, s)))
    full.append(apply_separable(y, rescale_matrix(36, 1 / s), rescale_matrix(36, 1 / s)))
  assert kanazawa._window_operators(40, 40, 5, SCALES[0])[0].shape[0] < 40  # a window is cut
  out, fn = jax.jit(lambda v, x: (layer.apply(v, x), kanazawa_conv2d(x, kernel, bias)))(variables,
                                                                                         x)
  np.testing.assert_allclose(out, jnp.max(jnp.stack(full), axis=0), rtol=1e-5, atol=1e-5)
  np.testing.assert_array_equal(out, fn)  # the module is the function on its parameters


def test_single_unit_scale_is_a_plain_convolution(rng):
  x = jax.random.normal(rng, (2, 12, 12, 2))
  kernel = jax.random.normal(rng, (3, 3, 2, 5))
  bias = jnp.arange(5.0)
  y, plain = jax.jit(lambda x, k, b: (kanazawa_conv2d(x, k, b, scales=(1.0,)),
                                      conv2d(x, k, b)))(x, kernel, bias)
  assert y.shape == (2, 10, 10, 5)
  np.testing.assert_array_equal(y, plain)


def test_sesn_version_matches_reference(fixtures_dir):
  """The sesn repository's Kanazawa_SIConv2d (scales 0.63, 1, 1.59, padding 2) is KanazawaConv
  with padding=2 (fixture kanazawa_siconv2d)."""
  a, args, _ = load_peer(fixtures_dir, "kanazawa_siconv2d")
  layer = KanazawaConv(args["out_channels"], args["kernel_size"], tuple(args["scales"]),
                       padding=args["padding"])
  params = {"conv": {"kernel": a["weight"].transpose(2, 3, 1, 0), "bias": a["bias"]}}
  y, grads, (grad_x,) = outputs_and_vjp(lambda p, x: layer.apply({"params": p}, x), params,
                                        (nchw_to_nhwc(a["x"]),), nchw_to_nhwc(a["r"]))
  assert y.shape == (2, 20, 20, 3)
  errs = errors({"y": (y, nchw_to_nhwc(a["y"])), "grad_x": (grad_x, nchw_to_nhwc(a["grad_x"])),
                 "grad/weight": (grads["conv"]["kernel"], a["grad/weight"].transpose(2, 3, 1, 0)),
                 "grad/bias": (grads["conv"]["bias"], a["grad/bias"])})
  assert max(errs.values()) <= 1e-5, errs


def test_padding_is_applied_to_each_rescaled_copy():
  """padding=p zero-pads each rescaled copy before the shared convolution: for the factor 1 alone
  it is a padded convolution, and a downscaled copy's response equals the unpadded layer's on the
  input zero-padded after rescaling."""
  gen = np.random.default_rng(0)
  x = gen.standard_normal((1, 9, 9, 1), np.float32)
  kernel = gen.standard_normal((3, 3, 1, 2), np.float32)
  pad = center_pad_crop_matrix(9, 11)
  y, plain, down, manual = jax.jit(lambda x, k: (
      kanazawa_conv2d(x, k, jnp.zeros(2), scales=(1.0,), padding=1),
      conv2d(x, k, jnp.zeros(2), padding=1),
      kanazawa_conv2d(x, k, jnp.zeros(2), scales=(0.63,), padding=1),
      apply_separable(conv2d(apply_separable(x, pad @ rescale_matrix(9, 0.63),
                                             pad @ rescale_matrix(9, 0.63)), k, jnp.zeros(2)),
                      rescale_matrix(9, 1 / 0.63), rescale_matrix(9, 1 / 0.63))))(x, kernel)
  assert y.shape == (1, 9, 9, 2) and down.shape == (1, 9, 9, 2)
  np.testing.assert_array_equal(y, plain)
  np.testing.assert_allclose(down, manual, rtol=1e-5, atol=1e-6)
