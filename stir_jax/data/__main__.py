"""Command line for STIR data files: ``python -m stir_jax.data {generate,check,show} ...``.

Examples:

  python -m stir_jax.data generate --domain emoji --out data/emoji.npz
  python -m stir_jax.data check data/emoji.npz
  python -m stir_jax.data show data/emoji.npz --out emoji_grid.png

Every error is reported as one line ``error: ...`` on stderr with exit status 2 (never a traceback).
"""
from __future__ import annotations

import argparse
import math
import os
import pathlib
import sys
import time
from typing import NoReturn, Sequence

from stir_jax.data import stir_file

DOMAINS = ("emoji", "mnist", "trafficsign", "aerial")
IMPLEMENTED_DOMAINS = ("emoji",)
DEFAULT_SHOW_SCALES = (64, 48, 33, 17)


class CommandError(Exception):
  """A user-facing error: printed as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
  """An ArgumentParser whose errors are one line on stderr with exit status 2."""

  def error(self, message: str) -> NoReturn:
    sys.stderr.write(f"error: {self.prog}: {' '.join(message.split())}\n")
    sys.exit(2)


def _generate(args: argparse.Namespace) -> None:
  """Generates a domain's STIR file."""
  if args.domain not in IMPLEMENTED_DOMAINS:
    if args.domain in DOMAINS:
      raise CommandError(
          f"--domain {args.domain!r} is not implemented yet (only emoji is; mnist, trafficsign "
          "and aerial are not implemented yet)")
    raise CommandError(
        f"unknown --domain {args.domain!r} (STIR domains: {', '.join(DOMAINS)}; only emoji is "
        "implemented yet, the others are not implemented yet)")
  out = pathlib.Path(args.out)
  if out.exists() and not args.force:
    raise CommandError(f"{out} already exists (use --force to overwrite)")
  if out.exists() and out.is_dir():
    raise CommandError(f"{out} is a directory")
  from stir_jax.data import emoji  # pylint: disable=g-import-not-at-top

  names = emoji.EMOJI_NAMES
  if args.icons is not None:
    if not 1 <= args.icons <= len(names):
      raise CommandError(f"--icons must be in 1..{len(names)}, got {args.icons}")
    names = names[:args.icons]
  start = time.perf_counter()
  data = emoji.generate_emoji(names, seed=args.seed, progress=not args.quiet)
  out.parent.mkdir(parents=True, exist_ok=True)
  stir_file.save_stir(out, data)
  print(f"wrote {out} ({out.stat().st_size / 2**20:.1f} MiB) in "
        f"{time.perf_counter() - start:.1f} s")
  print(stir_file.summarize(data))


def _check(args: argparse.Namespace) -> None:
  """Loads a STIR file with full validation and prints its summary."""
  data = stir_file.load_stir(args.file, validate=True)
  print(f"file: {args.file}: OK")
  print(stir_file.summarize(data))


def _show(args: argparse.Namespace) -> None:
  """Draws every class at a few scales (instance 0 of one split) into a PNG."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top

  try:
    scales = [int(s) for s in args.scales.split(",")]
  except ValueError:
    raise CommandError(f"--scales must be comma-separated integers, got {args.scales!r}") from None
  for s in scales:
    if not stir_file.MIN_SCALE <= s <= stir_file.MAX_SCALE:
      raise CommandError(f"--scales values must be in 17..64, got {s}")
  data = stir_file.load_stir(args.file, validate=True)
  split = stir_file.SPLITS.index(args.split)
  gap = 4
  n = data.num_classes
  cols = min(args.columns, n)
  rows = math.ceil(n / cols)
  fig, axes = plt.subplots(rows, cols, figsize=(cols * 0.55 * len(scales), rows * 0.75),
                           squeeze=False)
  for c in range(rows * cols):
    ax = axes[c // cols, c % cols]
    ax.axis("off")
    if c >= n:
      continue
    tiles = []
    for s in scales:
      tile = data.imgs[split, stir_file.index_of_scale(s), c, 0]
      tiles.append(tile if tile.ndim == 3 else tile[..., None])
      tiles.append(np.full((stir_file.IMAGE_SIZE, gap, tiles[-1].shape[-1]), 128, np.uint8))
    strip = np.concatenate(tiles[:-1], axis=1)
    ax.imshow(strip[..., 0] if strip.shape[-1] == 1 else strip, cmap="gray", vmin=0, vmax=255,
              interpolation="nearest")
    ax.set_title(data.lbldata[c], fontsize=6, pad=2)
  title = data.metadata.get("title", str(args.file))
  fig.suptitle(f"{title}: {args.split} split, s = {', '.join(map(str, scales))}", fontsize=8)
  fig.tight_layout()
  out = pathlib.Path(args.out)
  out.parent.mkdir(parents=True, exist_ok=True)
  fig.savefig(out, dpi=args.dpi)
  plt.close(fig)
  print(f"wrote {out}")


def build_parser() -> argparse.ArgumentParser:
  """The argparse parser of ``python -m stir_jax.data``."""
  parser = _Parser(prog="python -m stir_jax.data", description=__doc__.splitlines()[0])
  sub = parser.add_subparsers(dest="command", required=True, metavar="{generate,check,show}")

  gen = sub.add_parser("generate", help="generate a STIR file")
  gen.add_argument("--domain", required=True, help=f"one of {', '.join(DOMAINS)}")
  gen.add_argument("--out", required=True, help="destination .npz (parent folders are created)")
  gen.add_argument("--seed", type=int, default=42, help="numpy RandomState seed (default 42)")
  gen.add_argument("--icons", type=int, default=None, help="only the first N emoji icons")
  gen.add_argument("--force", action="store_true", help="overwrite an existing file")
  gen.add_argument("--quiet", action="store_true", help="no progress bar")
  gen.set_defaults(func=_generate)

  check = sub.add_parser("check", help="validate a STIR file and print its summary")
  check.add_argument("file")
  check.set_defaults(func=_check)

  show = sub.add_parser("show", help="draw every class at a few scales into a PNG")
  show.add_argument("file")
  show.add_argument("--out", required=True, help="destination image, e.g. grid.png")
  show.add_argument("--split", choices=stir_file.SPLITS, default="test")
  show.add_argument("--scales", default=",".join(map(str, DEFAULT_SHOW_SCALES)),
                    help="comma-separated object sizes (default 64,48,33,17)")
  show.add_argument("--columns", type=int, default=6, help="classes per row")
  show.add_argument("--dpi", type=int, default=150)
  show.set_defaults(func=_show)
  return parser


def main(argv: Sequence[str] | None = None) -> int:
  """Runs the command line; returns the exit status."""
  args = build_parser().parse_args(argv)
  try:
    args.func(args)
  except BrokenPipeError:  # The reader of stdout went away (e.g. `| head`); not an error.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return 0
  except KeyboardInterrupt:
    sys.stderr.write("error: interrupted\n")
    return 130
  except (CommandError, stir_file.StirFileError) as e:
    sys.stderr.write(f"error: {' '.join(str(e).split())}\n")
    return 2
  except Exception as e:  # pylint: disable=broad-except
    # Anything else (an unwritable folder, a missing package) is still one line, no traceback.
    sys.stderr.write(f"error: {type(e).__name__}: {' '.join(str(e).split())}\n")
    return 2
  return 0


if __name__ == "__main__":
  sys.exit(main())
