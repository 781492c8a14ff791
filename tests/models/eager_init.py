"""Eager (unjitted) ``init`` times of SiConv2d and models: this tree against an earlier commit.

Each measurement runs in a fresh Python process (so each pays all its compilations, XLA's and
the random-number kernels' included), timing one eager ``module.init`` after the backend has
started; "before" imports stir_jax from ``git archive <--before>`` (default: the commit before the
eager scan form), "after" from this working tree. The two alternate, so background load hits both
alike; the table shows the median of the repeats.

  PYTHONPATH=. python tests/models/eager_init.py [--repeats 3] [--before 5ee28c2]
      [--cases siconv,standard,pixel_pool]
"""
import argparse
import os
import pathlib
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[2]


def measure(case: str) -> float:
  """Seconds of one eager init of `case` ("siconv": SiConv2d(16, pool="pixel") on 64x64, or a
  model name) in this process, the backend started first."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  x = jnp.zeros((1, 64, 64, 1))
  jax.block_until_ready(x + 1)
  if case == "siconv":
    from stir_jax.layers.siconv import SiConv2d  # pylint: disable=g-import-not-at-top
    module = SiConv2d(16, pool="pixel")
  else:
    from stir_jax import models  # pylint: disable=g-import-not-at-top
    module = models.get_model(case, 1, 10)
  t = time.perf_counter()
  jax.block_until_ready(module.init(jax.random.PRNGKey(0), x))
  return time.perf_counter() - t


def _run(case: str, path: str) -> float:
  env = dict(os.environ, PYTHONPATH=path)
  out = subprocess.run([sys.executable, __file__, "--measure", case], env=env, cwd=path,
                       capture_output=True, text=True, check=False)
  if out.returncode:
    raise RuntimeError(f"{case} under {path} failed: {out.stderr.strip().splitlines()[-1:]}")
  return float(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
  p = argparse.ArgumentParser(prog="tests/models/eager_init.py")
  p.add_argument("--repeats", type=int, default=3)
  p.add_argument("--before", default="5ee28c2", help="git revision of the 'before' column")
  p.add_argument("--cases", default="siconv,standard,pixel_pool")
  p.add_argument("--measure", help=argparse.SUPPRESS)
  args = p.parse_args(argv)
  if args.measure:
    print(measure(args.measure))
    return 0
  if args.repeats < 1:
    print("error: --repeats must be at least 1", file=sys.stderr)
    return 2
  with tempfile.TemporaryDirectory() as old:
    archive = subprocess.run(["git", "archive", args.before, "stir_jax"], cwd=ROOT,
                             capture_output=True, check=False)
    if archive.returncode:
      print(f"error: git archive {args.before!r} failed: {archive.stderr.decode().strip()}",
            file=sys.stderr)
      return 2
    tar = pathlib.Path(old) / "tree.tar"
    tar.write_bytes(archive.stdout)
    with tarfile.open(tar) as f:
      f.extractall(old, filter="data")
    print(f"case | before ({args.before}) s | after (working tree) s | median of {args.repeats}, "
          "one fresh process each", flush=True)
    for case in args.cases.split(","):
      times = {"before": [], "after": []}
      try:
        for _ in range(args.repeats):
          times["before"].append(_run(case, old))
          times["after"].append(_run(case, str(ROOT)))
      except RuntimeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
      print(f"{case} | {statistics.median(times['before']):.2f} | "
            f"{statistics.median(times['after']):.2f}", flush=True)
  return 0


if __name__ == "__main__":
  sys.exit(main())
