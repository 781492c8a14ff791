"""`stir_jax.runtime.apply_xla_flags()` turns XLA:CPU's YNNPACK convolutions off when called (importing
stir_jax does not), unless told to keep the defaults; it never drops the user's own flags."""
import os
import subprocess
import sys

from stir_jax import runtime

_PROBE = ("import os, sys, stir_jax; from stir_jax import runtime; "
          "before = os.environ.get('XLA_FLAGS', ''); "
          "added = runtime.apply_xla_flags() if 'apply' in sys.argv else None; "
          "print('before:' + before); print('flags:' + os.environ.get('XLA_FLAGS', '')); "
          "print(added); print(runtime.ynn_conv_active())")


def _run(*args, **env_overrides):
  env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "STIR_JAX_KEEP_XLA_FLAGS")}
  env.update(env_overrides)
  out = subprocess.run([sys.executable, "-c", _PROBE, *args], env=env, capture_output=True,
                       text=True, check=True, timeout=300)
  before, flags, added, active = out.stdout.strip().splitlines()[-4:]
  return (before.removeprefix("before:"), flags.removeprefix("flags:"), added,
          active == "True")


def test_import_leaves_flags_and_apply_turns_ynn_off():
  # Importing stir_jax alone changes nothing: XLA's defaults (YNNPACK on where jaxlib has it).
  before, flags, added, active_by_default = _run()
  assert before == flags == "" and added == "None"
  knows = runtime._jaxlib_knows(runtime.YNN_FLAG)
  assert active_by_default == knows  # YNNPACK convolutions: the reason for the flag
  # apply() adds the flag where this jaxlib knows it, and the convolutions leave YNNPACK.
  before, flags, added, active = _run("apply")
  assert before == ""
  if knows:
    assert flags == runtime.YNN_FLAG + "=" and added == "True" and not active
  else:  # an unknown flag would abort the process, so nothing is added
    assert flags == "" and added == "False"


def test_opt_out_keeps_defaults():
  _, flags, added, active = _run("apply", STIR_JAX_KEEP_XLA_FLAGS="1")
  assert runtime.YNN_FLAG not in flags and added == "False"
  assert active == runtime._jaxlib_knows(runtime.YNN_FLAG)


def test_user_flags_are_kept():
  _, flags, _, _ = _run("apply", XLA_FLAGS="--xla_force_host_platform_device_count=2")
  assert flags.startswith("--xla_force_host_platform_device_count=2")
  if runtime._jaxlib_knows(runtime.YNN_FLAG):
    assert flags.endswith(runtime.YNN_FLAG + "=")


def test_apply_after_backend_start_warns_and_changes_nothing():
  probe = ("import os, warnings, jax; jax.devices(); from stir_jax import runtime; "
           "warnings.simplefilter('error'); "
           "\ntry:\n  runtime.apply_xla_flags(); print('no warning')"
           "\nexcept UserWarning as e:\n  print('warned', os.environ.get('XLA_FLAGS', ''))")
  env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "STIR_JAX_KEEP_XLA_FLAGS")}
  out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True,
                       check=True, timeout=300).stdout.strip()
  if runtime._jaxlib_knows(runtime.YNN_FLAG):
    assert out == "warned"
  else:
    assert out == "no warning"
