"""stir_jax turns XLA:CPU's YNNPACK convolutions off at import, unless told to keep the defaults."""
import os
import subprocess
import sys

import pytest

from stir_jax import xla_flags

_PROBE = ("import os, stir_jax; from stir_jax import xla_flags; "
          "print('flags:' + os.environ.get('XLA_FLAGS', '')); print(xla_flags.ynn_conv_active())")


def _run(**env_overrides):
  env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "STIR_JAX_KEEP_XLA_FLAGS")}
  env.update(env_overrides)
  out = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True,
                       check=True, timeout=300)
  flags, active = out.stdout.strip().splitlines()[-2:]
  return flags.removeprefix("flags:"), active == "True"


@pytest.mark.skipif(not xla_flags._jaxlib_knows(xla_flags.YNN_FLAG),
                    reason="this jaxlib has no YNNPACK fusion flag")
def test_import_turns_ynn_convolutions_off_and_opt_out_keeps_them():
  flags, active = _run()
  assert xla_flags.YNN_FLAG + "=" in flags
  assert not active
  flags, active = _run(STIR_JAX_KEEP_XLA_FLAGS="1")
  assert xla_flags.YNN_FLAG not in flags
  assert active  # XLA's default: the reason for the flag


def test_user_flags_are_kept():
  flags, _ = _run(XLA_FLAGS="--xla_force_host_platform_device_count=2")
  assert flags.startswith("--xla_force_host_platform_device_count=2")
