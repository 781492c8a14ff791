"""The SESN and DSS MNIST-scale models (stir_jax.models.mnist_scale.sesn / .dss) against the
authors' PyTorch models (peer fixtures model_mnist_{ses,dss}_{scalar,vector}_28.npz): eval-mode
logits, grad_x and every parameter gradient at 1e-4 * max|ref| (the peers README's model
tolerance), with the large gradients checked at the stored indices (grad_idx/grad_sub) and through
their full-tensor L2 norm and sum (relative to the reference L2 norm).

Measured (float32, CPU), relative to max|ref|: logits <= 1.1e-6, grad_x <= 7.1e-7, parameter
gradients <= 2.0e-6 (full or at the stored indices); full-tensor L2 norms within 6e-7 and sums
within 2.2e-5 of the reference L2 norm.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from stir_jax import convert
from stir_jax.models import mnist_scale
from tests.helpers import load_peer, rel_err

TOL = 1e-4
FACTORIES = ["mnist_ses_scalar_28", "mnist_ses_vector_28", "mnist_dss_scalar_28",
             "mnist_dss_vector_28"]


def torch_layout_grads(from_torch, state: dict, grads: dict) -> dict:
  """Our parameter gradients in the state dict's names and layouts.

  The converter only renames and re-lays-out arrays, so converting a state dict whose entries hold
  their own global element ids tells where each of our parameter elements came from. Elements of
  a state-dict tensor that no parameter came from stay NaN.
  """
  ids, offsets, total = {}, {}, 0
  for name, value in state.items():
    if value.dtype.kind == "f":
      ids[name] = (total + np.arange(value.size, dtype=np.float64)).reshape(value.shape)
      offsets[name], total = total, total + value.size
  assert total < 2**24  # ids survive the converter's float32 cast exactly
  moved = from_torch(ids)["params"]
  flat = np.full(total, np.nan, np.float32)
  moved_leaves = jax.tree_util.tree_flatten_with_path(moved)[0]
  grad_leaves = jax.tree_util.tree_flatten_with_path(grads)[0]
  assert [p for p, _ in moved_leaves] == [p for p, _ in grad_leaves]
  for (_, where), (_, g) in zip(moved_leaves, grad_leaves):
    flat[np.asarray(where).ravel().astype(np.int64)] = np.asarray(g).ravel()
  return {n: flat[offsets[n]:offsets[n] + state[n].size].reshape(state[n].shape) for n in ids}


@pytest.fixture(scope="module", params=FACTORIES)
def case(request, fixtures_dir):
  factory = request.param
  arrays, args, meta = load_peer(fixtures_dir, f"model_{factory}")
  assert args["factory"] == factory
  state = {k: v for k, v in arrays.items() if "." in k and "/" not in k}
  module, variables = convert.from_sesn_model(factory, state)

  @jax.jit
  def run(params, batch_stats, x, r):
    apply = lambda p, x: module.apply({"params": p, "batch_stats": batch_stats}, x)
    logits, vjp = jax.vjp(apply, params, x)
    return logits, vjp(r)

  x = arrays["x"].transpose(0, 2, 3, 1)
  logits, (grad_p, grad_x) = run(variables["params"], variables["batch_stats"], x, arrays["r"])
  _, from_torch = mnist_scale.spec(factory).load()
  grads = torch_layout_grads(from_torch, state, grad_p)
  return arrays, meta, module, variables, logits, grad_x, grads


def test_logits_and_grad_x(case):
  arrays, _, _, _, logits, grad_x, _ = case
  assert logits.shape == (2, 10)
  assert rel_err(logits, arrays["y"]) <= TOL
  assert rel_err(grad_x.transpose(0, 3, 1, 2), arrays["grad_x"]) <= TOL


def test_parameter_gradients(case):
  arrays, meta, _, variables, _, _, grads = case
  trainable = meta["trainable_params"]
  # Every trainable tensor is a parameter here, element for element, and nothing else is.
  assert sum(a.size for a in jax.tree.leaves(variables["params"])) == sum(
      arrays[n].size for n in trainable)
  for name in trainable:
    g = grads[name]
    assert not np.isnan(g).any(), name
    if f"grad/{name}" in arrays:
      assert rel_err(g, arrays[f"grad/{name}"]) <= TOL, name
    else:
      idx = arrays[f"grad_idx/{name}"]
      assert rel_err(g.ravel()[idx], arrays[f"grad_sub/{name}"]) <= TOL, name
    l2 = float(arrays[f"grad_l2/{name}"])
    g64 = g.astype(np.float64)
    assert abs(np.linalg.norm(g64) - l2) <= TOL * l2, name
    assert abs(g64.sum() - float(arrays[f"grad_sum/{name}"])) <= TOL * l2, name


def test_batch_stats_mirror_the_running_statistics(case):
  arrays, _, _, variables, _, _, _ = case
  for name, stats in variables["batch_stats"].items():
    torch_name = "linear.1" if name == "linear" else name.replace("main", "main.")
    stats = stats["linear1"] if name == "linear" else stats
    np.testing.assert_array_equal(stats["mean"], arrays[f"{torch_name}.running_mean"])
    np.testing.assert_array_equal(stats["var"], arrays[f"{torch_name}.running_var"])


def test_train_mode_updates_batch_stats(fixtures_dir):
  """train=True: batch statistics, the running averages updated (flax momentum 0.9 = PyTorch's
  0.1), dropout on."""
  arrays, _, _ = load_peer(fixtures_dir, "model_mnist_dss_vector_28")
  state = {k: v for k, v in arrays.items() if "." in k and "/" not in k}
  module, variables = convert.from_sesn_model("mnist_dss_vector_28", state)
  x = arrays["x"].transpose(0, 2, 3, 1)

  @jax.jit
  def step(variables, x, key):
    return module.apply(variables, x, train=True, mutable=["batch_stats"], rngs={"dropout": key})

  logits, updated = step(variables, x, jax.random.PRNGKey(1))
  assert logits.shape == (2, 10) and bool(jnp.all(jnp.isfinite(logits)))
  assert rel_err(logits, arrays["y"]) > 1e-2  # not the eval-mode logits
  before, after = variables["batch_stats"]["main4"], updated["batch_stats"]["main4"]
  batch_mean = (after["mean"] - 0.9 * before["mean"]) / 0.1
  assert float(jnp.max(jnp.abs(batch_mean - before["mean"]))) > 1e-3
  assert jax.tree.map(jnp.shape, after) == jax.tree.map(jnp.shape, before)


def test_from_torch_rejects_a_missing_tensor(fixtures_dir):
  arrays, _, _ = load_peer(fixtures_dir, "model_mnist_ses_vector_28")
  state = {k: v for k, v in arrays.items() if "." in k and "/" not in k}
  state["main.4.weight"] = state["main.4.weight"][:, :, :, :48]
  with pytest.raises(ValueError, match="main4"):
    convert.from_sesn_model("mnist_ses_vector_28", state)
