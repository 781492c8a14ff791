"""MnistCNN (mnist_cnn_28) against the sesn authors' MNIST_CNN: model_mnist_cnn_28.npz.

Eval mode (running batch-norm statistics, no dropout), as the fixture was made. Logits, grad_x and
every parameter gradient within 1e-4 * max|ref| (the peers README's model tolerance); gradients of
the large tensors through their stored entries (grad_idx/grad_sub) and full-tensor L2 norm and sum.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from stir_jax.models.mnist_scale import cnn, get_mnist_model
from tests.helpers import nchw_to_nhwc
from tests.models.peer_model_checks import assert_within_tolerance, model_errors, run_model

PARAM_KEYS = ("grad/", "grad_sub/", "grad_l2/", "grad_sum/")


@pytest.fixture(scope="module")
def case(fixtures_dir):
  return run_model(fixtures_dir, "mnist_cnn_28")


@pytest.fixture(scope="module")
def errs(case):
  return model_errors(case)


def test_logits_and_input_gradient(case, errs):
  assert case.logits.shape == (2, 10)
  assert_within_tolerance(errs, ("y", "grad_x"))


def test_parameter_gradients(case, errs):
  names = case.meta["trainable_params"]
  assert len(names) == 17  # 3 x (conv w, b, bn w, b) + linear.0.w + linear.1.{w,b} + linear.4.{w,b}
  assert set(case.grads) == set(names)
  assert_within_tolerance(errs, PARAM_KEYS)


def test_layout_and_train_mode(case, rng):
  arrays, module, variables = case.arrays, case.module, case.variables
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
