"""Gradient checks against the peer fixtures (tests/fixtures/peers): outputs and vector-Jacobian
products in one jitted program, compared at the README's tolerances."""
import jax
import numpy as np

from tests.helpers import rel_err


def outputs_and_vjp(apply, params, inputs: tuple, cotangent):
  """``apply(params, *inputs)``, and its VJP with ``cotangent`` (same structure as the output),
  in one jitted program: ``(outputs, param_grads, input_grads)``."""

  @jax.jit
  def run(params, inputs, cotangent):
    out, vjp = jax.vjp(lambda p, xs: apply(p, *xs), params, inputs)
    grad_params, grad_inputs = vjp(cotangent)
    return out, grad_params, grad_inputs

  return run(params, tuple(inputs), cotangent)


def errors(pairs: dict) -> dict:
  """{key: (ours, ref)} -> {key: max|ours - ref| / max|ref|}."""
  return {k: rel_err(np.asarray(a), np.asarray(b)) for k, (a, b) in pairs.items()}
