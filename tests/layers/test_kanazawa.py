"""Kanazawa et al.'s SI-ConvNet layer (stir_jax.layers.kanazawa)."""
import jax
import jax.numpy as jnp
import numpy as np

from stir_jax.layers import kanazawa
from stir_jax.layers.conv import conv2d
from stir_jax.layers.kanazawa import SCALES, KanazawaConv, kanazawa_conv2d
from stir_jax.layers.resample import apply_separable, rescale_matrix, scaled_size


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
