"""Small helpers shared by the parity tests."""
import numpy as np


def rel_err(ours, ref) -> float:
  """max |ours - ref| / max |ref|: the parity measure of the fixtures' README."""
  ref = np.asarray(ref)
  return float(np.max(np.abs(np.asarray(ours) - ref)) / np.max(np.abs(ref)))


def num_state_params(state: dict) -> int:
  """Parameters in a reference state dict (dotted names), bases (buffers) excluded."""
  return sum(v.size for k, v in state.items() if "." in k and not k.endswith("basis.basis"))
