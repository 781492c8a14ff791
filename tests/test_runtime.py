"""The entry points' process tuning (`stir_jax.runtime`): when the tcmalloc preload re-executes,
with what, and that it does; the missing-tcmalloc note; a missing extra as one line."""
import os
import subprocess
import sys

import pytest

from stir_jax import _optional, runtime


def test_loaded_reads_the_process_map(tmp_path):
  maps = tmp_path / "maps"
  maps.write_text("7f00-7f10 r-xp 0 08:01 1 /usr/lib/x86_64-linux-gnu/libc.so.6\n")
  assert runtime.loaded(str(maps)) == "system"
  maps.write_text(maps.read_text()
                  + "7f20-7f30 r-xp 0 08:01 2 /usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4\n")
  assert runtime.loaded(str(maps)) == "tcmalloc"
  maps.write_text("7f20-7f30 r-xp 0 08:01 2 /usr/lib/libjemalloc.so.2\n")
  assert runtime.loaded(str(maps)) == "jemalloc"
  assert runtime.loaded(str(tmp_path / "absent")) is None  # no /proc: cannot tell


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
  env = runtime.preload_environment(environ, platform, current, library)
  if expected is None:
    assert env is None
  else:
    assert env["LD_PRELOAD"] == expected and env["_STIR_JAX_TCMALLOC_TRIED"] == "1"
    assert {k: v for k, v in env.items() if k not in ("LD_PRELOAD", "_STIR_JAX_TCMALLOC_TRIED")
            } == {k: v for k, v in environ.items() if k != "LD_PRELOAD"}


def test_undecided_environment_drops_only_the_malloc_decision():
  env = {"PATH": "/usr/bin", "LD_PRELOAD": "libtcmalloc.so.4", "STIR_JAX_TCMALLOC": "0",
         "_STIR_JAX_TCMALLOC_TRIED": "1", "HOME": "/root"}
  assert runtime.undecided_environment(env) == {"PATH": "/usr/bin", "HOME": "/root"}


def test_use_tcmalloc_reexecutes_the_same_command(monkeypatch):
  calls = []
  monkeypatch.setattr(runtime, "loaded", lambda: "system")
  monkeypatch.setattr(runtime, "find_tcmalloc", lambda: "libtcmalloc_minimal.so.4")
  monkeypatch.setattr(sys, "platform", "linux")
  monkeypatch.delenv("STIR_JAX_TCMALLOC", raising=False)
  monkeypatch.delenv("_STIR_JAX_TCMALLOC_TRIED", raising=False)
  runtime.use_tcmalloc(execve=lambda *a: calls.append(a))
  (path, argv, env), = calls
  assert path == sys.executable and argv == sys.orig_argv
  assert env["LD_PRELOAD"].split()[0] == "libtcmalloc_minimal.so.4"


_PROBE = ("from stir_jax import runtime\n"
          "if __name__ == '__main__':\n"
          "  runtime.use_tcmalloc()\n"
          "  print(runtime.loaded(), flush=True)\n")


@pytest.mark.parametrize("opt_out", [False, True])
def test_a_program_runs_under_tcmalloc_where_installed(tmp_path, opt_out):
  """A real process: under tcmalloc after use_tcmalloc() where this machine has it (Debian:
  libtcmalloc-minimal4), else on the system malloc; always the system malloc when opted out."""
  script = tmp_path / "probe.py"
  script.write_text(_PROBE)
  env = runtime.undecided_environment(os.environ)
  if opt_out:
    env["STIR_JAX_TCMALLOC"] = "0"
  out = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True,
                       check=True).stdout.split()
  if sys.platform == "linux":
    installed = runtime.find_tcmalloc() is not None
    assert out == ["tcmalloc" if installed and not opt_out else "system"]
  else:  # no re-execution, and no /proc to read
    assert out == [str(runtime.loaded())]


@pytest.mark.parametrize("environ, platform, current, library, says", [
    ({}, "linux", "system", None, True),                          # the one case: named
    ({"STIR_JAX_TCMALLOC": "0"}, "linux", "system", None, False),  # opted out
    ({"_STIR_JAX_TCMALLOC_NOTED": "1"}, "linux", "system", None, False),  # named by a parent
    ({}, "linux", "system", "libtcmalloc.so.4", False),           # installed
    ({}, "linux", "jemalloc", None, False),                       # another malloc preloaded
    ({}, "darwin", None, None, False),                            # not Linux
])
def test_missing_tcmalloc_note(environ, platform, current, library, says):
  line = runtime.missing_tcmalloc_note(environ, platform, current, library)
  if says:
    assert "\n" not in line and "apt-get install libtcmalloc-minimal4" in line
  else:
    assert line is None


def test_a_missing_tcmalloc_is_named_once(monkeypatch, capsys):
  monkeypatch.setattr(runtime, "loaded", lambda: "system")
  monkeypatch.setattr(runtime, "find_tcmalloc", lambda: None)
  monkeypatch.setattr(sys, "platform", "linux")
  for name in ("STIR_JAX_TCMALLOC", "_STIR_JAX_TCMALLOC_TRIED", "_STIR_JAX_TCMALLOC_NOTED"):
    monkeypatch.delenv(name, raising=False)
  execs = []
  runtime.prepare()  # no extra asked for: only the malloc
  runtime.use_tcmalloc(execve=lambda *a: execs.append(a), note=sys.stderr)  # a second entry
  err = capsys.readouterr().err
  assert not execs and err.count("\n") == 1 and "libtcmalloc-minimal4" in err
  assert os.environ["_STIR_JAX_TCMALLOC_NOTED"] == "1"  # child processes stay quiet too


def test_prepare_names_a_missing_extra_in_one_line(monkeypatch, capsys):
  monkeypatch.setitem(_optional.EXTRAS, "train", ("json", "no_such_package_xyz.sub"))
  with pytest.raises(SystemExit) as e:
    runtime.prepare("train")
  assert e.value.code == 2
  assert capsys.readouterr().err == (
      "error: no_such_package_xyz is missing: pip install 'stir_jax[train]'\n")


def test_require_raises_one_line_for_a_missing_package_only(tmp_path, monkeypatch):
  assert _optional.require("json", extra="data").dumps([1]) == "[1]"
  with pytest.raises(_optional.MissingExtraError, match=r"^no_such_package_xyz is missing: pip "
                     r"install 'stir_jax\[data\]'$"):
    _optional.require("no_such_package_xyz", extra="data")
  with pytest.raises(_optional.MissingExtraError, match="^json is missing"):
    _optional.require("json.no_such_module", extra="data")  # a submodule: named by its package
  # An installed package that lacks one of its own dependencies: a broken install, not an extra.
  (tmp_path / "broken_pkg_xyz.py").write_text("import no_such_dependency_xyz\n")
  monkeypatch.syspath_prepend(str(tmp_path))
  with pytest.raises(ModuleNotFoundError) as e:
    _optional.require("broken_pkg_xyz", extra="data")
  assert not isinstance(e.value, _optional.MissingExtraError)
  assert e.value.name == "no_such_dependency_xyz"


def test_the_full_environment_has_every_extra():
  """The suite runs in the [test] install, which holds [data] and [train] (pyproject.toml)."""
  assert _optional.missing("data") == [] and _optional.missing("train") == []
