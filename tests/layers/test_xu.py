"""Xu et al.'s SiCNN layer (stir_jax.layers.xu): the column kernels and the layer as a function and
a module; the sesn repository's XU_SIConv2d against its fixtures."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from stir_jax.layers.conv import conv2d
from stir_jax.layers.xu import KERNEL_SIZES, XuConv, XuSesnConv, column_supports, xu_conv2d
from stir_jax.layers.xu import xu_kernels, xu_sesn_kernels
from stir_jax.layers.xu import xu_sesn_padded_size, xu_sesn_padding, xu_sesn_resize_matrix
from tests.helpers import load_peer, nchw_to_nhwc, rel_err
from tests.peer_checks import errors, outputs_and_vjp


def test_column_kernel_rules():
  kernel = jax.random.normal(jax.random.PRNGKey(1), (7, 7, 2, 3))
  stack = np.asarray(jax.jit(xu_kernels)(kernel))
  cols = stack.reshape(11, 11, 2, 5, 3)
  padded = np.pad(np.asarray(kernel), ((2, 2), (2, 2), (0, 0), (0, 0)))
  # Sizes 7 and 11 are the padded kernel itself (11 is a nearest 11 -> 11 identity).
  np.testing.assert_allclose(cols[:, :, :, 2], padded, rtol=1e-6)
  np.testing.assert_allclose(cols[:, :, :, 4], padded, rtol=1e-6)
  # Size 9: legacy nearest 11 -> 9 (rows floor(o * 11 / 9)), zero-padded by 1.
  rows = [0, 1, 2, 3, 4, 6, 7, 8, 9]
  np.testing.assert_allclose(cols[1:10, 1:10, :, 3] * np.abs(padded[np.ix_(rows, rows)]).sum((0, 1))
                             / np.abs(padded).sum((0, 1)), padded[np.ix_(rows, rows)], rtol=1e-5)
  # Size 3 lives in the central 3x3 and keeps the L1 norm of the original.
  assert np.all(cols[:4, :, :, 0] == 0) and np.all(cols[7:, :, :, 0] == 0)
  np.testing.assert_allclose(np.abs(cols[:, :, :, 0]).sum((0, 1)), np.abs(padded).sum((0, 1)),
                             rtol=1e-5)
  # Size 3: bilinear with aligned corners samples rows/cols 0, 5, 10 of the padded kernel exactly.
  corners = padded[np.ix_([0, 5, 10], [0, 5, 10])]
  scale = np.abs(padded).sum((0, 1)) / np.abs(corners).sum((0, 1))
  np.testing.assert_allclose(cols[4:7, 4:7, :, 0], corners * scale, rtol=1e-5)


def test_layer_function_and_module():
  kx, kw, kv = jax.random.split(jax.random.PRNGKey(0), 3)
  x = jax.random.normal(kx, (2, 16, 16, 2))
  w1 = jax.random.normal(kw, (7, 7, 2, 3))
  w2 = jax.random.normal(kv, (7, 7, 3, 4))

  @jax.jit
  def run(x, w1, w2):
    y1 = xu_conv2d(x, w1)
    y1_mod, kernels = XuConv(3, initial=True).apply({"params": {"kernel": w1}}, x)
    y2 = xu_conv2d(y1, w2, grouped=True)
    y2_masked = xu_conv2d(y1.at[..., 3:6].set(0.0), w2, grouped=True)  # column 1's maps
    same7 = conv2d(x, w1, padding=3, impl="direct")
    return y1, y1_mod, kernels, y2, y2_masked, same7

  y1, y1_mod, kernels, y2, y2_masked, same7 = run(x, w1, w2)
  assert y1.shape == (2, 16, 16, 15) and y2.shape == (2, 16, 16, 20)
  assert kernels.shape == (11, 11, 2, 15)
  np.testing.assert_array_equal(y1_mod, y1)
  # Column 2 (size 7) is the plain 'same' convolution with the base kernel.
  assert rel_err(y1[..., 6:9], same7) <= 1e-5
  # Grouped: zeroing column 1's input changes column 1's output only.
  changed = np.asarray(jnp.max(jnp.abs(y2 - y2_masked), axis=(0, 1, 2))).reshape(5, 4)
  assert np.all(changed[1] > 0) and np.all(np.delete(changed, 1, axis=0) == 0)


def test_column_supports_are_tight():
  """Every non-zero tap of a column kernel lies in its support, and the support's edge rows hold
  some (for the default sizes: 1, 3, 7, 6 and 7 rows; size 3 samples two zero-border rows)."""
  supports = column_supports(7, KERNEL_SIZES)
  assert [r1 - r0 for r0, r1 in supports] == [1, 3, 7, 6, 7]
  kernel = jax.random.normal(jax.random.PRNGKey(2), (7, 7, 2, 3))
  cols = np.asarray(xu_kernels(kernel)).reshape(11, 11, 2, 5, 3)
  for g, (r0, r1) in enumerate(supports):
    col = np.abs(cols[:, :, :, g]).sum((2, 3))
    inside = np.zeros((11, 11), bool)
    inside[r0:r1, r0:r1] = True
    assert np.all(col[~inside] == 0), g
    assert np.all(col[[r0, r1 - 1], r0:r1].sum(1) > 0) and np.all(col[r0:r1, [r0, r1 - 1]].sum(0) > 0)


@pytest.mark.parametrize("impl", ["direct", "fft"])
@pytest.mark.parametrize("k, sizes", [(7, KERNEL_SIZES), (5, (3, 5, 9))])
def test_column_form_equals_one_grouped_convolution(impl, k, sizes):
  """The layer's per-column convolutions over the kernel supports compute the m x m 'same'
  convolution with all column kernels (grouped for a later layer), values and gradients."""
  groups, cin, cout = len(sizes), 2, 3
  m = max(sizes)
  kx, kw, kc, kd = jax.random.split(jax.random.PRNGKey(3), 4)
  for grouped, channels in ((False, cin), (True, groups * cin)):
    x = jax.random.normal(kx, (2, 17, 17, channels))
    w = jax.random.normal(kw, (k, k, cin, cout))
    ct = jax.random.normal(kc if grouped else kd, (2, 17, 17, groups * cout))
    ours = lambda x, w: xu_conv2d(x, w, sizes, grouped=grouped, impl=impl)
    full = lambda x, w: conv2d(x, xu_kernels(w, sizes), padding=m // 2, impl="fft",
                               feature_group_count=groups if grouped else 1)
    (y, vjp), (y_ref, vjp_ref) = jax.vjp(ours, x, w), jax.vjp(full, x, w)
    assert y.shape == y_ref.shape == (2, 17, 17, groups * cout)
    assert rel_err(y, y_ref) <= 1e-5
    for got, want in zip(vjp(ct), vjp_ref(ct)):
      assert rel_err(got, want) <= 1e-5


@pytest.mark.parametrize("name", ["xu_siconv2d_single_input", "xu_siconv2d_multiscale_input"])
def test_sesn_version_matches_reference(name, fixtures_dir):
  """XuSesnConv against the sesn repository's XU_SIConv2d: output, gradients and the stored
  transformed_kernel (the rescaled, renormalised kernels it convolves with)."""
  a, args, _ = load_peer(fixtures_dir, name)
  scales = tuple(args["scales"])
  layer = XuSesnConv(args["out_channel"], args["kernel_size"], scales, args["num_input_scales"])
  params = {"kernel": a["weight"].transpose(2, 3, 1, 0)}
  (y, kernels), grads, (grad_x,) = outputs_and_vjp(
      lambda p, x: (layer.apply({"params": p}, x), xu_sesn_kernels(p["kernel"], scales)),
      params, (nchw_to_nhwc(a["x"]),), (nchw_to_nhwc(a["r"]), jnp.zeros((7, 7, 2, 9))))
  assert y.shape == (2, 20, 20, 9) and kernels.shape == (7, 7, 2, 9)
  errs = errors({"y": (y, nchw_to_nhwc(a["y"])), "grad_x": (grad_x, nchw_to_nhwc(a["grad_x"])),
                 "grad/weight": (grads["kernel"], a["grad/weight"].transpose(2, 3, 1, 0)),
                 "transformed_kernel": (kernels, a["transformed_kernel"].transpose(2, 3, 1, 0))})
  assert max(errs.values()) <= 1e-5, errs


def test_sesn_resize_rules():
  """K = 23 for k = 7 and max scale 3.33 (padding 11); upscaling is nearest with the given factor
  (source floor(o * float32(1 / s))), then a centred crop; downscaling bilinear with aligned
  corners, then centred zero padding."""
  scales = (0.3, 0.45, 0.67, 1.0, 1.49, 2.23, 3.33)
  assert xu_sesn_padded_size(7, scales) == 23 and xu_sesn_padding(7, scales) == 11
  assert xu_sesn_padded_size(5, (0.63, 1.0, 1.59)) == 7
  up = xu_sesn_resize_matrix(23, 1.49)        # 23 -> floor(34.27) = 34; crop (23 - 34) // 2 = -6
  src = np.floor(np.arange(34, dtype=np.float32) * np.float32(1 / 1.49)).astype(int)
  np.testing.assert_array_equal(up, np.eye(23)[src[6:29]])
  down = xu_sesn_resize_matrix(23, 0.3)                      # 23 -> floor(6.9) = 6, pad 8 + 9
  assert np.all(down[:8] == 0) and np.all(down[14:] == 0)
  np.testing.assert_allclose(down[8:14] @ np.arange(23.0), np.arange(6) * 22 / 5, rtol=1e-12)
  np.testing.assert_array_equal(xu_sesn_resize_matrix(23, 1.0), np.eye(23))
