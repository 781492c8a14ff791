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
  spec = models._spec(name)  # pylint: disable=protected-access
  _, convert = spec.load()
  params = jax.tree.map(lambda a: np.asarray(a, np.float32), convert(state))
  model = models.get_model(name, num_channels, num_classes)
  expected = jax.eval_shape(
      model.init, jax.random.PRNGKey(0), jax.ShapeDtypeStruct((1, 64, 64, num_channels), np.float32))
  try:
    models.check_params(expected["params"], params)
  except ValueError as e:
    raise ValueError(f"{name}: {e}") from None
  return {"params": params}
