"""Load reference (PyTorch) checkpoints without PyTorch: state dicts of numpy arrays -> variables."""
from __future__ import annotations

import jax
import numpy as np

from stir_jax import models


def from_torch_state_dict(name: str, state: dict, num_channels: int, num_classes: int) -> dict:
  """Map a reference state dict (names -> numpy arrays, NCHW/OIHW layouts) to {'params': ...}.

  Buffers (the SESN/DISCO bases, area interpolation matrices) are recomputed by our code and not
  read from the state dict. The result is checked against a fresh init of the model: a missing or
  misshapen parameter raises ValueError naming it.
  """
  convert = models.lookup(name).from_torch()
  params = jax.tree.map(lambda a: np.asarray(a, np.float32), convert(state))
  model = models.get_model(name, num_channels, num_classes)
  expected = jax.eval_shape(
      model.init, jax.random.PRNGKey(0), jax.ShapeDtypeStruct((1, 64, 64, num_channels), np.float32))
  try:
    models.check_params(expected["params"], params)
  except ValueError as e:
    raise ValueError(f"{name}: {e}") from None
  return {"params": params}


def from_sesn_model(factory: str, state_dict: dict):
  """An MNIST-scale model of the SESN authors' repository and its variables from a PyTorch state
  dict (names -> numpy arrays, their layouts): ``(module, {"params", "batch_stats"})``.

  ``factory`` is the repository's factory name (e.g. "mnist_ses_scalar_28"; see
  `stir_jax.models.mnist_scale.factory_names()`). ``module.apply(variables, x)`` takes (B, 28, 28, 1)
  channels-last images and returns eval-mode logits. Fixed buffers (bases, Bessel kernels, steerable
  filters) are recomputed by our code, not read. The variables are checked against a fresh init of
  the module: a missing or misshapen entry raises ValueError naming it.
  """
  from stir_jax.models import mnist_scale  # pylint: disable=g-import-not-at-top
  convert = mnist_scale.spec(factory).from_torch()
  module = mnist_scale.get_mnist_model(factory)
  variables = jax.tree.map(lambda a: np.asarray(a, np.float32), convert(state_dict))
  expected = jax.eval_shape(module.init, jax.random.PRNGKey(0),
                            jax.ShapeDtypeStruct((1, 28, 28, 1), np.float32))
  try:
    models.check_params(expected, variables)
  except ValueError as e:
    raise ValueError(f"{factory}: {e}") from None
  return module, variables
