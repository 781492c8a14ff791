"""Checks of the MNIST-scale models (stir_jax.models.mnist_scale) against the sesn repository's
model fixtures (../shared/fixtures/peers/model_mnist_*_28.npz): logits, grad_x and every parameter
gradient, mapped back to the reference's names and layouts, at the README's 1e-4 of max|ref|."""
import jax
import numpy as np

from stir_jax import convert
from stir_jax.models import mnist_scale
from tests.helpers import load_peer, nchw_to_nhwc, rel_err

TOLERANCE = 1e-4


def torch_layout(convert_fn, state: dict, tree: dict) -> dict:
  """A tree shaped like ``convert_fn(state)["params"]`` (e.g. gradients) in the state dict's names
  and layouts; reference parameters with no counterpart here (unused ones) are absent.

  Works for any converter that only selects, transposes and reshapes: every float tensor of the
  state dict is replaced by a disjoint range of indices, converted, and the indices say where each
  of our entries came from (exact in float32 below 2**24 entries).
  """
  names = [k for k, v in state.items() if np.issubdtype(np.asarray(v).dtype, np.floating)]
  offsets = np.cumsum([0] + [np.asarray(state[k]).size for k in names])
  assert offsets[-1] < 2**24
  indexed = dict(state)
  for k, off in zip(names, offsets):
    shape = np.shape(state[k])
    indexed[k] = (off + np.arange(int(np.prod(shape)))).reshape(shape).astype(np.float64)
  where = convert_fn(indexed)["params"]
  flat = np.full(offsets[-1], np.nan)
  for idx, value in zip(jax.tree.leaves(where), jax.tree.leaves(tree)):
    flat[np.asarray(idx, np.int64).ravel()] = np.asarray(value, np.float64).ravel()
  out = {}
  for k, lo, hi in zip(names, offsets[:-1], offsets[1:]):
    if not np.all(np.isnan(flat[lo:hi])):
      assert not np.any(np.isnan(flat[lo:hi])), f"{k} only partly mapped"
      out[k] = flat[lo:hi].reshape(np.shape(state[k]))
  return out


def check_model(fixtures_dir, factory: str) -> dict:
  """Runs the factory's module on the fixture (eval mode) and its VJP; returns the errors by key
  (``y``, ``grad_x``, ``grad/<name>``, and for subsampled tensors ``grad_sub/<name>``,
  ``grad_l2/<name>``, ``grad_sum/<name>``). Unused reference parameters must have a zero
  reference gradient and no counterpart here."""
  arrays, args, meta = load_peer(fixtures_dir, f"model_{factory}")
  assert args["factory"] == factory
  state = {k: v for k, v in arrays.items() if "/" not in k and k not in ("x", "y", "r", "grad_x",
                                                                         "seed")}
  module, variables = convert.from_sesn_model(factory, state)
  params, stats = variables["params"], variables["batch_stats"]

  @jax.jit
  def run(params, x, r):
    y, vjp = jax.vjp(lambda p, x: module.apply({"params": p, "batch_stats": stats}, x), params, x)
    return (y,) + vjp(r)

  y, grad_params, grad_x = run(params, nchw_to_nhwc(arrays["x"]), arrays["r"])
  errs = {"y": rel_err(y, arrays["y"]), "grad_x": rel_err(grad_x, nchw_to_nhwc(arrays["grad_x"]))}
  _, from_torch = mnist_scale.spec(factory).load()
  ours = torch_layout(from_torch, state, grad_params)
  unused = set(meta["trainable_params"]) - set(ours)
  assert set(ours) <= set(meta["trainable_params"]), set(ours) - set(meta["trainable_params"])
  for name in meta["trainable_params"]:
    if name in unused:
      np.testing.assert_array_equal(arrays[f"grad/{name}"] if f"grad/{name}" in arrays
                                    else arrays[f"grad_l2/{name}"], 0.0, err_msg=name)
      continue
    g = ours[name]
    if f"grad/{name}" in arrays:
      errs[f"grad/{name}"] = rel_err(g, arrays[f"grad/{name}"])
      continue
    sub = arrays[f"grad_sub/{name}"]
    errs[f"grad_sub/{name}"] = rel_err(g.ravel()[arrays[f"grad_idx/{name}"]], sub)
    l2 = float(arrays[f"grad_l2/{name}"])
    errs[f"grad_l2/{name}"] = abs(float(np.linalg.norm(g)) - l2) / l2
    # |sum| <= sqrt(n) * l2 (Cauchy-Schwarz) is the scale of the sum.
    errs[f"grad_sum/{name}"] = (abs(float(g.sum()) - float(arrays[f"grad_sum/{name}"]))
                                / (np.sqrt(g.size) * l2))
  return errs
