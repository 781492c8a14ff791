"""Checks shared by the NNX tests: NNX module == Linen module == pure function on the same
parameters, and the peer fixtures' outputs and gradients through an NNX module."""
from typing import Callable

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np

from tests.helpers import rel_err


def params(layer: nnx.Module) -> dict:
  """The layer's nnx.Param values as a nested dict of arrays (the Linen ``params`` layout)."""
  return nnx.to_pure_dict(nnx.state(layer, nnx.Param))


def abstract(make: Callable[[nnx.Rngs], nnx.Module]) -> nnx.Module:
  """``make(rngs)`` built with abstract parameters (`nnx.eval_shape`: no random draws, whose
  compilation per shape dominates these small tests); `set_params` then gives every one a value."""
  return nnx.eval_shape(lambda: make(nnx.Rngs(0)))


def set_params(layer: nnx.Module, **arrays) -> None:
  """Sets the named parameters to the given arrays (their shapes and the declared dtypes)."""
  for name, value in arrays.items():
    param = getattr(layer, name)
    value = jnp.asarray(value, param.get_value().dtype)
    assert value.shape == param.get_value().shape, (name, value.shape, param.get_value().shape)
    param.set_value(value)


def assert_twins(layer: nnx.Module, linen, inputs: tuple, pure: Callable,
                 to_linen: Callable = lambda p: p, cotangent=None):
  """The NNX layer, the Linen module on the NNX layer's parameters (``to_linen(params)``) and
  ``pure(params, *inputs)``, each called eagerly, give exactly the same outputs; the Linen module's
  own parameter tree has the same names and shapes.

  Returns the NNX output, and with a ``cotangent`` also ``(param_grads, input_grads)``, the VJP of
  the NNX layer in one jitted program (param_grads a nested dict like `params`).
  """
  inputs = tuple(jnp.asarray(x) for x in inputs)
  p = params(layer)
  shapes = jax.eval_shape(linen.init, jax.random.PRNGKey(0), *inputs)
  assert (jax.tree.map(lambda a: a.shape, shapes.get("params", {}))
          == jax.tree.map(np.shape, to_linen(p)))
  out = layer(*inputs)
  linen_out = linen.apply({"params": to_linen(p)}, *inputs)
  pure_out = pure(p, *inputs)
  assert jax.tree.structure(out) == jax.tree.structure(linen_out) == jax.tree.structure(pure_out)
  for ours, theirs, plain in zip(jax.tree.leaves(out), jax.tree.leaves(linen_out),
                                 jax.tree.leaves(pure_out)):
    assert ours.dtype == theirs.dtype == plain.dtype
    np.testing.assert_array_equal(ours, theirs)
    np.testing.assert_array_equal(ours, plain)
  if cotangent is None:
    return out
  graphdef, state = nnx.split(layer)

  @jax.jit
  def vjp(state, inputs, cotangent):
    _, pullback = jax.vjp(lambda s, xs: nnx.merge(graphdef, s)(*xs), state, inputs)
    return pullback(cotangent)

  grads, grad_inputs = vjp(state, inputs, cotangent)
  return out, (nnx.to_pure_dict(grads), grad_inputs)


def max_error(ours: dict, refs: dict) -> tuple[float, dict]:
  """The largest relative error (`rel_err`) of ``ours[k]`` against ``refs[k]``, and all of them."""
  errs = {k: rel_err(np.asarray(ours[k]), np.asarray(ref)) for k, ref in refs.items()}
  return max(errs.values()), errs
