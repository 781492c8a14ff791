"""Checks of the MNIST-scale models (stir_jax.models.mnist_scale) against the sesn repository's
model fixtures (tests/fixtures/peers/model_mnist_*_28.npz, from GitHub ISosnovik/sesn,
models/mnist_*.py): logits, grad_x and every parameter gradient, mapped back to the reference's
names and layouts, at the peers README's model tolerance of 1e-4 of max|ref|.

Usage: ``errs = model_errors(run_model(fixtures_dir, "mnist_ss_28"))``, then assert every value
(or a chosen subset) is at most TOLERANCE. `run_model` is the one jitted forward + VJP (its compile
dominates), so a test module can share one `ModelCase` between several tests.
"""
import dataclasses

import flax.linen as nn
import jax
import numpy as np

from stir_jax import convert
from stir_jax.models import mnist_scale
from tests.helpers import load_peer, nchw_to_nhwc, rel_err
from tests.peer_checks import outputs_and_vjp

TOLERANCE = 1e-4


def torch_layout(convert_fn, state: dict, tree: dict) -> dict:
  """A tree shaped like ``convert_fn(state)["params"]`` (e.g. gradients) in the state dict's names
  and layouts; reference parameters with no counterpart here (unused ones) are absent.

  Works for any converter that only selects, transposes and reshapes: every float tensor of the
  state dict is replaced by a disjoint range of indices, converted, and the indices say where each
  of our entries came from (exact in float32 below 2**24 entries). A reference tensor is either
  fully mapped or absent.
  """
  names = [k for k, v in state.items() if np.issubdtype(np.asarray(v).dtype, np.floating)]
  offsets = np.cumsum([0] + [np.asarray(state[k]).size for k in names])
  assert offsets[-1] < 2**24
  indexed = dict(state)
  for k, off in zip(names, offsets):
    shape = np.shape(state[k])
    indexed[k] = (off + np.arange(int(np.prod(shape)))).reshape(shape).astype(np.float64)
  where = jax.tree_util.tree_flatten_with_path(convert_fn(indexed)["params"])[0]
  values = jax.tree_util.tree_flatten_with_path(tree)[0]
  assert [p for p, _ in where] == [p for p, _ in values]
  flat = np.full(offsets[-1], np.nan)
  for (_, idx), (_, value) in zip(where, values):
    flat[np.asarray(idx, np.int64).ravel()] = np.asarray(value, np.float64).ravel()
  out = {}
  for k, lo, hi in zip(names, offsets[:-1], offsets[1:]):
    if not np.all(np.isnan(flat[lo:hi])):
      assert not np.any(np.isnan(flat[lo:hi])), f"{k} only partly mapped"
      out[k] = flat[lo:hi].reshape(np.shape(state[k]))
  return out


@dataclasses.dataclass(frozen=True)
class ModelCase:
  """One eval-mode forward + VJP of a model on its fixture.

  Attributes: arrays, args, meta: the fixture (`tests.helpers.load_peer`); module, variables: from
  `stir_jax.convert.from_sesn_model`; logits: (B, 10); grad_x: (B, 28, 28, 1), channels-last;
  grads: our parameter gradients by reference name, in the reference's layout (float64).
  """
  arrays: dict
  args: dict
  meta: dict
  module: nn.Module
  variables: dict
  logits: np.ndarray
  grad_x: np.ndarray
  grads: dict


def reference_state(arrays: dict) -> dict:
  """The PyTorch state dict (dotted names) among a model fixture's arrays."""
  return {k: v for k, v in arrays.items() if "." in k and "/" not in k}


def run_model(fixtures_dir, factory: str) -> ModelCase:
  """Converts the fixture's state dict, runs the model in eval mode on ``x`` and its VJP with ``r``
  (one jitted program)."""
  arrays, args, meta = load_peer(fixtures_dir, f"model_{factory}")
  assert args["factory"] == factory
  state = reference_state(arrays)
  module, variables = convert.from_sesn_model(factory, state)
  stats = variables["batch_stats"]
  apply = lambda p, x: module.apply({"params": p, "batch_stats": stats}, x)
  logits, grad_params, (grad_x,) = outputs_and_vjp(
      apply, variables["params"], (nchw_to_nhwc(arrays["x"]),), arrays["r"])
  from_torch = mnist_scale.spec(factory).from_torch()
  grads = torch_layout(from_torch, state, grad_params)
  return ModelCase(arrays, args, meta, module, variables, np.asarray(logits), np.asarray(grad_x),
                   grads)


def model_errors(case: ModelCase) -> dict:
  """The errors by key, each to be at most TOLERANCE: ``y`` and ``grad_x`` (relative to max|ref|);
  per trainable reference parameter ``grad/<name>`` (stored in full) or ``grad_sub/<name>`` (at
  grad_idx), and for every parameter ``grad_l2/<name>`` (|our L2 - ref L2| / ref L2) and
  ``grad_sum/<name>`` (|our sum - ref sum| / ref L2).

  Asserted here: shapes; our parameters are exactly the used trainable reference tensors, element
  for element; an unused reference parameter (no counterpart here) has a zero reference gradient.
  """
  arrays, grads = case.arrays, case.grads
  trainable = case.meta["trainable_params"]
  assert case.logits.shape == arrays["y"].shape, case.logits.shape
  assert case.grad_x.shape == nchw_to_nhwc(arrays["grad_x"]).shape, case.grad_x.shape
  errs = {"y": rel_err(case.logits, arrays["y"]),
          "grad_x": rel_err(case.grad_x, nchw_to_nhwc(arrays["grad_x"]))}
  assert set(grads) <= set(trainable), set(grads) - set(trainable)
  assert sum(a.size for a in jax.tree.leaves(case.variables["params"])) == sum(
      arrays[n].size for n in grads)
  for name in trainable:
    if name not in grads:  # unused: PyTorch's gradient is zero
      np.testing.assert_array_equal(arrays[f"grad/{name}"] if f"grad/{name}" in arrays
                                    else arrays[f"grad_l2/{name}"], 0.0, err_msg=name)
      continue
    g = grads[name]
    if f"grad/{name}" in arrays:
      assert g.shape == arrays[f"grad/{name}"].shape, name
      errs[f"grad/{name}"] = rel_err(g, arrays[f"grad/{name}"])
    else:
      errs[f"grad_sub/{name}"] = rel_err(g.ravel()[arrays[f"grad_idx/{name}"]],
                                         arrays[f"grad_sub/{name}"])
    l2 = float(arrays[f"grad_l2/{name}"])
    errs[f"grad_l2/{name}"] = abs(float(np.linalg.norm(g)) - l2) / l2
    # The sum on the scale of the L2 norm: the strictest of |sum| <= sum|g| <= sqrt(n) * L2.
    errs[f"grad_sum/{name}"] = abs(float(g.sum()) - float(arrays[f"grad_sum/{name}"])) / l2
  return errs


def assert_within_tolerance(errs: dict, keys=None):
  """Every error (or those whose key starts with one of ``keys``) at most TOLERANCE; the message
  names the worst and lists all."""
  errs = {k: v for k, v in errs.items() if keys is None or k.startswith(tuple(keys))}
  assert errs
  worst = max(errs, key=errs.get)
  assert errs[worst] <= TOLERANCE, (worst, errs[worst], errs)


def check_model(fixtures_dir, factory: str) -> dict:
  """`model_errors` of `run_model`."""
  return model_errors(run_model(fixtures_dir, factory))
