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
from tests.helpers import load_peer, nchw_to_nhwc, rel_err
from tests.models.peer_model_checks import (assert_within_tolerance, model_errors,
                                           reference_state, run_model)

FACTORIES = ["mnist_ses_scalar_28", "mnist_ses_vector_28", "mnist_dss_scalar_28",
             "mnist_dss_vector_28"]
PARAM_KEYS = ("grad/", "grad_sub/", "grad_l2/", "grad_sum/")


@pytest.fixture(scope="module", params=FACTORIES)
def case(request, fixtures_dir):
  case = run_model(fixtures_dir, request.param)
  return case, model_errors(case)


def test_logits_and_grad_x(case):
  case, errs = case
  assert case.logits.shape == (2, 10)
  assert_within_tolerance(errs, ("y", "grad_x"))


def test_parameter_gradients(case):
  case, errs = case
  # Every trainable tensor is a parameter here, element for element, and nothing else is.
  assert set(case.grads) == set(case.meta["trainable_params"])
  assert_within_tolerance(errs, PARAM_KEYS)


def test_batch_stats_mirror_the_running_statistics(case):
  arrays, variables = case[0].arrays, case[0].variables
  for name, stats in variables["batch_stats"].items():
    torch_name = "linear.1" if name == "linear" else name.replace("main", "main.")
    stats = stats["linear1"] if name == "linear" else stats
    np.testing.assert_array_equal(stats["mean"], arrays[f"{torch_name}.running_mean"])
    np.testing.assert_array_equal(stats["var"], arrays[f"{torch_name}.running_var"])


def test_train_mode_updates_batch_stats(fixtures_dir):
  """train=True: batch statistics, the running averages updated (flax momentum 0.9 = PyTorch's
  0.1), dropout on."""
  arrays, _, _ = load_peer(fixtures_dir, "model_mnist_dss_vector_28")
  state = reference_state(arrays)
  module, variables = convert.from_sesn_model("mnist_dss_vector_28", state)
  x = nchw_to_nhwc(arrays["x"])

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
  state = reference_state(arrays)
  state["main.4.weight"] = state["main.4.weight"][:, :, :, :48]
  with pytest.raises(ValueError, match="main4"):
    convert.from_sesn_model("mnist_ses_vector_28", state)
