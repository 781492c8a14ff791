"""Small helpers shared by the parity tests."""
import numpy as np


def rel_err(ours, ref) -> float:
  """max |ours - ref| / max |ref|: the parity measure of the fixtures' README."""
  ref = np.asarray(ref)
  return float(np.max(np.abs(np.asarray(ours) - ref)) / np.max(np.abs(ref)))


def num_state_params(state: dict) -> int:
  """Parameters in a reference state dict (dotted names), bases (buffers) excluded."""
  return sum(v.size for k, v in state.items() if "." in k and not k.endswith("basis.basis"))


def load_peer(fixtures_dir, name: str) -> tuple[dict, dict, dict]:
  """A tests/fixtures/peers file: (arrays by key, json-decoded args, json-decoded meta)."""
  import json  # pylint: disable=g-import-not-at-top
  with np.load(fixtures_dir / "peers" / f"{name}.npz") as f:
    arrays = {k: f[k] for k in f.files if k not in ("args", "meta")}
    return arrays, json.loads(str(f["args"])), json.loads(str(f["meta"]))


def nchw_to_nhwc(a):
  """(N, C, H, W) -> (N, H, W, C), and (N, C, S, H, W) -> (N, S, H, W, C)."""
  a = np.asarray(a)
  return a.transpose(0, 2, 3, 1) if a.ndim == 4 else a.transpose(0, 2, 3, 4, 1)


def load_model_fixture(fixtures_dir, name: str) -> dict:
  """The arrays of tests/fixtures/model_<name>.npz."""
  with np.load(fixtures_dir / f"model_{name}.npz") as f:
    return {k: f[k] for k in f.files}


def reference_outputs(fixture: dict, name: str, num_classes: int = 10):
  """(logits, aux) of registered model `name` with the fixture's converted reference parameters
  on the fixture's input x (NCHW)."""
  import jax  # pylint: disable=g-import-not-at-top
  from stir_jax import models  # pylint: disable=g-import-not-at-top
  x = np.asarray(fixture["x"]).transpose(0, 2, 3, 1)
  model = models.get_model(name, x.shape[-1], num_classes)
  params = models.lookup(name).from_torch()(fixture)
  return jax.jit(model.apply, static_argnames="with_aux")({"params": params}, x, with_aux=True)

