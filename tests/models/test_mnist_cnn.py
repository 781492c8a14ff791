"""MnistCNN (mnist_cnn_28) against the sesn authors' MNIST_CNN: model_mnist_cnn_28.npz.

Eval mode (running batch-norm statistics, no dropout), as the fixture was made. Logits, grad_x and
every parameter gradient within 1e-4 * max|ref| (the peers README's model tolerance); gradients of
the large tensors through their stored entries (grad_idx/grad_sub) and full-tensor L2 norm and sum.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from stir_jax import convert
from stir_jax.models.mnist_scale import cnn, get_mnist_model
from tests.helpers import load_peer, nchw_to_nhwc, rel_err

TOL = 1e-4


def _torch_grad(grads: dict, name: str) -> np.ndarray:
  """Our gradient of the PyTorch parameter `name`, in PyTorch's layout."""
  module, kind = name.rsplit(".", 1)
  if module.startswith("main."):
    index = int(module.split(".")[1])
    block = next(i for i, pair in enumerate(cnn.TORCH_INDICES, start=1) if index in pair)
    g = grads[f"conv{block}" if index == cnn.TORCH_INDICES[block - 1][0] else f"bn{block}"]
  else:
    g = grads["linear"][f"linear{module.split('.')[1]}"]
  leaf = np.asarray(g[{"weight": "kernel" if "kernel" in g else "scale", "bias": "bias"}[kind]])
  if leaf.ndim == 4:   # HWIO -> OIHW
    return leaf.transpose(3, 2, 0, 1)
  if leaf.ndim == 2:   # (in, out) -> (out, in)
    return leaf.T
  return leaf


@pytest.fixture(scope="module")
def case(fixtures_dir):
  arrays, args, meta = load_peer(fixtures_dir, "model_mnist_cnn_28")
  module, variables = convert.from_sesn_model(args["factory"], arrays)
  x = jnp.asarray(nchw_to_nhwc(arrays["x"]))

  @jax.jit
  def run(params, x, r):
    f = lambda p, x: module.apply({"params": p, "batch_stats": variables["batch_stats"]}, x)
    y, vjp = jax.vjp(f, params, x)
    return y, vjp(r)

  y, (grads, grad_x) = run(variables["params"], x, jnp.asarray(arrays["r"]))
  return arrays, meta, module, variables, y, grads, grad_x


def test_logits_and_input_gradient(case):
  arrays, _, _, _, y, _, grad_x = case
  assert y.shape == (2, 10)
  assert rel_err(y, arrays["y"]) <= TOL
  assert rel_err(grad_x, nchw_to_nhwc(arrays["grad_x"])) <= TOL


def test_parameter_gradients(case):
  arrays, meta, _, _, _, grads, _ = case
  names = meta["trainable_params"]
  assert len(names) == 17  # 3 x (conv w, b, bn w, b) + linear.0.w + linear.1.{w,b} + linear.4.{w,b}
  for name in names:
    ours = _torch_grad(grads, name)
    if f"grad/{name}" in arrays:
      ref = arrays[f"grad/{name}"]
      assert ours.shape == ref.shape, name
      assert rel_err(ours, ref) <= TOL, name
    else:  # a large tensor: the stored entries, and the whole tensor's L2 norm and sum
      ref = arrays[f"grad_sub/{name}"]
      assert rel_err(ours.reshape(-1)[arrays[f"grad_idx/{name}"]], ref) <= TOL, name
    l2, total = arrays[f"grad_l2/{name}"], arrays[f"grad_sum/{name}"]
    assert abs(np.linalg.norm(ours.astype(np.float64)) - l2) <= TOL * l2, name
    scale = np.abs(ours).sum()  # a sum can cancel: compare it on the scale of sum |g|
    assert abs(ours.astype(np.float64).sum() - total) <= TOL * scale, name


def test_layout_and_train_mode(case, rng):
  arrays, _, module, variables, _, _, _ = case
  fresh = jax.eval_shape(get_mnist_model("mnist_cnn_28").init, rng, jnp.zeros((1, 28, 28, 1)))
  assert (jax.tree.map(lambda a: a.shape, fresh)
          == jax.tree.map(np.shape, cnn.from_torch(arrays)))
  count = sum(a.size for a in jax.tree.leaves(fresh["params"]))
  assert count == sum(arrays[n].size for n in arrays if n.split(".")[-1] in ("weight", "bias")
                      and not n.startswith("grad"))
  # train mode: batch statistics move the running averages (momentum 0.1) and dropout is random
  x = jnp.asarray(nchw_to_nhwc(arrays["x"]))
  run = jax.jit(lambda v, x, k: module.apply(v, x, train=True, mutable=["batch_stats"],
                                             rngs={"dropout": k}))
  y1, upd = run(variables, x, jax.random.PRNGKey(1))
  y2, _ = run(variables, x, jax.random.PRNGKey(2))
  assert not np.allclose(y1, y2)
  old, new = variables["batch_stats"]["bn1"]["mean"], upd["batch_stats"]["bn1"]["mean"]
  assert np.max(np.abs(np.asarray(new) - 0.9 * old)) > 1e-3
