"""The entry points' tcmalloc preload: when it re-executes, with what, and that it does."""
import os
import subprocess
import sys

import pytest

from stir_jax import allocator


def test_loaded_reads_the_process_map(tmp_path):
  maps = tmp_path / "maps"
  maps.write_text("7f00-7f10 r-xp 0 08:01 1 /usr/lib/x86_64-linux-gnu/libc.so.6\n")
  assert allocator.loaded(str(maps)) == "system"
  maps.write_text(maps.read_text()
                  + "7f20-7f30 r-xp 0 08:01 2 /usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4\n")
  assert allocator.loaded(str(maps)) == "tcmalloc"
  maps.write_text("7f20-7f30 r-xp 0 08:01 2 /usr/lib/libjemalloc.so.2\n")
  assert allocator.loaded(str(maps)) == "jemalloc"
  assert allocator.loaded(str(tmp_path / "absent")) is None  # no /proc: cannot tell


@pytest.mark.parametrize("environ, platform, current, library, expected", [
    # the one case that re-executes; an existing LD_PRELOAD is kept after tcmalloc
    ({}, "linux", "system", "libtcmalloc_minimal.so.4", "libtcmalloc_minimal.so.4"),
    ({"LD_PRELOAD": "libfoo.so"}, "linux", "system", "libtcmalloc.so.4",
     "libtcmalloc.so.4 libfoo.so"),
    # and the cases that run as they are
    ({"STIR_JAX_TCMALLOC": "0"}, "linux", "system", "libtcmalloc.so.4", None),  # opted out
    ({}, "linux", "tcmalloc", "libtcmalloc.so.4", None),     # already under tcmalloc
    ({}, "linux", "jemalloc", "libtcmalloc.so.4", None),     # the user preloaded another malloc
    ({}, "linux", "system", None, None),                     # not installed
    ({}, "darwin", None, "libtcmalloc.dylib", None),         # not Linux
    ({"_STIR_JAX_TCMALLOC_TRIED": "1"}, "linux", "system", "libtcmalloc.so.4", None),  # no loop
])
def test_preload_environment(environ, platform, current, library, expected):
  env = allocator.preload_environment(environ, platform, current, library)
  if expected is None:
    assert env is None
  else:
    assert env["LD_PRELOAD"] == expected and env["_STIR_JAX_TCMALLOC_TRIED"] == "1"
    assert {k: v for k, v in env.items() if k not in ("LD_PRELOAD", "_STIR_JAX_TCMALLOC_TRIED")
            } == {k: v for k, v in environ.items() if k != "LD_PRELOAD"}


def test_undecided_environment_drops_only_the_malloc_decision():
  env = {"PATH": "/usr/bin", "LD_PRELOAD": "libtcmalloc.so.4", "STIR_JAX_TCMALLOC": "0",
         "_STIR_JAX_TCMALLOC_TRIED": "1", "HOME": "/root"}
  assert allocator.undecided_environment(env) == {"PATH": "/usr/bin", "HOME": "/root"}


def test_use_tcmalloc_reexecutes_the_same_command(monkeypatch):
  calls = []
  monkeypatch.setattr(allocator, "loaded", lambda: "system")
  monkeypatch.setattr(allocator, "find_tcmalloc", lambda: "libtcmalloc_minimal.so.4")
  monkeypatch.setattr(sys, "platform", "linux")
  monkeypatch.delenv("STIR_JAX_TCMALLOC", raising=False)
  monkeypatch.delenv("_STIR_JAX_TCMALLOC_TRIED", raising=False)
  allocator.use_tcmalloc(execve=lambda *a: calls.append(a))
  (path, argv, env), = calls
  assert path == sys.executable and argv == sys.orig_argv
  assert env["LD_PRELOAD"].split()[0] == "libtcmalloc_minimal.so.4"


_PROBE = ("from stir_jax import allocator\n"
          "if __name__ == '__main__':\n"
          "  allocator.use_tcmalloc()\n"
          "  print(allocator.loaded(), flush=True)\n")


@pytest.mark.parametrize("opt_out", [False, True])
def test_a_program_runs_under_tcmalloc_where_installed(tmp_path, opt_out):
  """A real process: under tcmalloc after use_tcmalloc() where this machine has it (Debian:
  libtcmalloc-minimal4), else on the system malloc; always the system malloc when opted out."""
  script = tmp_path / "probe.py"
  script.write_text(_PROBE)
  env = allocator.undecided_environment(os.environ)
  if opt_out:
    env["STIR_JAX_TCMALLOC"] = "0"
  out = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True,
                       check=True).stdout.split()
  if sys.platform == "linux":
    installed = allocator.find_tcmalloc() is not None
    assert out == ["tcmalloc" if installed and not opt_out else "system"]
  else:  # no re-execution, and no /proc to read
    assert out == [str(allocator.loaded())]
