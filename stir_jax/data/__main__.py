"""Command line for the data files: ``python -m stir_jax.data {generate,mnist-scale,check,...}``.

Examples:

  python -m stir_jax.data generate --domain emoji --out data/emoji.npz
  python -m stir_jax.data generate --domain fashion_mnist --out data/fashion_mnist.npz \\
      --source /usr/share/datasets/fashion-mnist
  python -m stir_jax.data generate --domain mnist --out data/mnist.npz [--source MNIST_DIR]
  python -m stir_jax.data generate --domain trafficsign --out data/trafficsign.npz --source mapillary
  python -m stir_jax.data generate --domain aerial --out data/aerial.npz --source dota
  python -m stir_jax.data generate --domain tfds:cifar10 --out data/cifar10.npz --instances 50
  python -m stir_jax.data generate --domain tfds-boxes:coco/2017 --out data/coco.npz
  python -m stir_jax.data mnist-scale --idx-dir MNIST_DIR --seed 0 --out data/mnist_scale_0.npz
  python -m stir_jax.data check data/emoji.npz          (STIR or MNIST-scale files)
  python -m stir_jax.data show data/emoji.npz --out emoji_grid.png
  python -m stir_jax.data bench data/emoji.npz

Every error is reported as one line ``error: ...`` on stderr with exit status 2 (never a traceback).
"""
from __future__ import annotations

import argparse
import logging
import math
import os
import pathlib
import sys
import time
from typing import NoReturn, Sequence

from stir_jax import _optional
from stir_jax.data import stir_file

DOMAINS = ("emoji", "mnist", "fashion_mnist", "trafficsign", "aerial")
PREFIXES = ("tfds:", "tfds-boxes:")
DEFAULT_SHOW_SCALES = (64, 48, 33, 17)
DEFAULT_SHOW_FACTORS = (1.0, 0.8, 0.6, 0.45, 0.3)  # MNIST-scale: scale factors s in [0.3, 1]
# Training examples per second of the paper's fastest run: standard CNN, mnist Mid2Rest, 8,000
# examples in 1.217 s per epoch (shared/paper_results.csv, their GPU).
PAPER_FASTEST_CONSUMER = 6600


class CommandError(Exception):
  """A user-facing error: printed as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
  """An ArgumentParser whose errors are one line on stderr with exit status 2."""

  def error(self, message: str) -> NoReturn:
    sys.stderr.write(f"error: {self.prog}: {' '.join(message.split())}\n")
    sys.exit(2)


def _note(line: str) -> None:
  sys.stderr.write(f"note: {line}\n")


def _check_domain(domain: str) -> None:
  if domain in DOMAINS:
    return
  for prefix in PREFIXES:
    if domain.startswith(prefix):
      if not domain[len(prefix):].strip():
        raise CommandError(f"--domain {domain!r} names no TFDS dataset (e.g. {prefix}cifar10)")
      return
  raise CommandError(
      f"unknown --domain {domain!r} (expected one of {', '.join(DOMAINS)}, tfds:NAME for a TFDS "
      "image-classification dataset or tfds-boxes:NAME for a TFDS detection dataset)")


def _source(args: argparse.Namespace, required: bool) -> pathlib.Path | None:
  if args.source is None:
    if required:
      raise CommandError(f"--domain {args.domain} needs --source (the raw dataset folder)")
    return None
  source = pathlib.Path(args.source)
  if not source.exists():
    raise CommandError(f"--source {source} does not exist")
  if source.is_dir() and not any(source.iterdir()):
    raise CommandError(f"--source {source} is empty")
  return source


def _make(args: argparse.Namespace, notes: list[str]):
  """Runs the domain's generator; returns (StirData, SkipCounter or None).

  Informational lines (classes dropped by rule) go to ``notes``; they are printed only when the
  generation succeeds, so a failure prints just its one error line.
  """
  progress = not args.quiet
  domain = args.domain
  if domain == "emoji":
    from stir_jax.data import emoji  # pylint: disable=g-import-not-at-top
    names = emoji.EMOJI_NAMES
    if args.icons is not None:
      if not 1 <= args.icons <= len(names):
        raise CommandError(f"--icons must be in 1..{len(names)}, got {args.icons}")
      names = names[:args.icons]
    return emoji.generate_emoji(names, seed=args.seed, progress=progress), None
  if domain in ("mnist", "fashion_mnist"):
    from stir_jax.data import mnist  # pylint: disable=g-import-not-at-top
    source = _source(args, required=False)
    if source is None and domain == "fashion_mnist" and mnist.DEBIAN_FASHION_MNIST.is_dir():
      source = mnist.DEBIAN_FASHION_MNIST
      notes.append(f"using {source} (Debian's dataset-fashion-mnist)")
    digits = (mnist.read_idx_folder(source) if source is not None
              else mnist.load_tfds_digits(domain, args.data_dir))
    names = mnist.DOMAINS[domain]["names"]
    if args.classes is not None:
      if not 1 <= args.classes <= len(names):
        raise CommandError(f"--classes must be in 1..{len(names)}, got {args.classes}")
      names = names[:args.classes]
    return mnist.generate_digits(
        digits, names, domain=domain, seed=args.seed, progress=progress,
        instances=args.instances or mnist.DEFAULT_INSTANCES), None
  if domain == "trafficsign":
    from stir_jax.data import trafficsign  # pylint: disable=g-import-not-at-top
    return trafficsign.generate_trafficsign(
        _source(args, required=True), seed=args.seed, progress=progress, log=notes.append,
        instances=args.instances or trafficsign.DEFAULT_INSTANCES)
  if domain == "aerial":
    from stir_jax.data import aerial  # pylint: disable=g-import-not-at-top
    return aerial.generate_aerial(
        _source(args, required=True), seed=args.seed, progress=progress, log=notes.append,
        instances=args.instances or aerial.DEFAULT_INSTANCES)
  from stir_jax.data import tfds_sources  # pylint: disable=g-import-not-at-top
  if domain.startswith("tfds-boxes:"):
    return tfds_sources.generate_tfds_boxes(
        domain.split(":", 1)[1], seed=args.seed, progress=progress, classes=args.classes,
        data_dir=args.data_dir, log=notes.append,
        instances=args.instances or tfds_sources.DEFAULT_BOX_INSTANCES)
  return tfds_sources.generate_tfds_classification(
      domain.split(":", 1)[1], seed=args.seed, progress=progress, classes=args.classes,
      data_dir=args.data_dir,
      instances=args.instances or tfds_sources.DEFAULT_CLASSIFICATION_INSTANCES)


def _generate(args: argparse.Namespace) -> None:
  """Generates a domain's STIR file."""
  _check_domain(args.domain)
  if args.instances is not None and args.instances < 1:
    raise CommandError(f"--instances must be positive, got {args.instances}")
  if args.domain == "emoji" and args.instances not in (None, 1):
    raise CommandError("emoji has one instance per class (--instances 1)")
  out = pathlib.Path(args.out)
  _refuse_existing(out, args.force)
  from stir_jax.data import recipes  # pylint: disable=g-import-not-at-top

  # Library warnings (download retries, TFDS notices) would bury the one-line error: keep quiet.
  for name in ("urllib3", "absl", "tensorflow_datasets"):
    logging.getLogger(name).setLevel(logging.ERROR)
  start = time.perf_counter()
  notes: list[str] = []
  try:
    data, skipped = _make(args, notes)
  except recipes.GenerationError as e:
    raise CommandError(str(e)) from None
  for line in notes:
    _note(line)
  if skipped is not None and skipped.count:
    _note(skipped.report())
  out.parent.mkdir(parents=True, exist_ok=True)
  stir_file.save_stir(out, data)
  print(f"wrote {out} ({out.stat().st_size / 2**20:.1f} MiB) in "
        f"{time.perf_counter() - start:.1f} s")
  if skipped is not None:
    print(f"skipped undecodable inputs: {skipped.count}")
  print(stir_file.summarize(data))


def _refuse_existing(out: pathlib.Path, force: bool) -> None:
  if out.exists() and out.is_dir():
    raise CommandError(f"{out} is a directory")
  if out.exists() and not force:
    raise CommandError(f"{out} already exists (use --force to overwrite)")


def _mnist_scale(args: argparse.Namespace) -> None:
  """Generates one MNIST-scale realisation (stir_jax.data.mnist_scale)."""
  from stir_jax.data import mnist, mnist_scale, recipes  # pylint: disable=g-import-not-at-top

  out = pathlib.Path(args.out)
  _refuse_existing(out, args.force)
  sizes = {"train": args.train_size, "valid": args.val_size, "test": args.test_size}
  for name, value in (("--train-size", args.train_size), ("--val-size", args.val_size),
                      ("--test-size", args.test_size)):
    if value < 1:
      raise CommandError(f"{name} must be positive, got {value}")
  if not 0 < args.min_scale <= args.max_scale:
    raise CommandError(f"need 0 < --min-scale <= --max-scale, got {args.min_scale}, "
                       f"{args.max_scale}")
  for name in ("absl", "tensorflow_datasets"):
    logging.getLogger(name).setLevel(logging.ERROR)
  start = time.perf_counter()
  try:
    if args.idx_dir is not None:
      folder = pathlib.Path(args.idx_dir)
      if not folder.is_dir() or not any(folder.iterdir()):
        problem = ("does not exist" if not folder.exists() else "is not a folder"
                   if not folder.is_dir() else "is empty")
        raise CommandError(f"--idx-dir {folder} {problem} (expected the four MNIST IDX files)")
      source = mnist.read_idx_folder(folder)
    else:
      source = mnist.load_tfds_digits(args.domain, args.data_dir)
    data = mnist_scale.generate_mnist_scale(
        source, args.seed, sizes=sizes, scale_range=(args.min_scale, args.max_scale),
        names=mnist.DOMAINS[args.domain]["names"], domain=args.domain, progress=not args.quiet)
  except recipes.GenerationError as e:
    raise CommandError(str(e)) from None
  out.parent.mkdir(parents=True, exist_ok=True)
  mnist_scale.save_mnist_scale(out, data)
  print(f"wrote {out} ({out.stat().st_size / 2**20:.1f} MiB) in "
        f"{time.perf_counter() - start:.1f} s")
  print(mnist_scale.summarize(data))


def _bench(args: argparse.Namespace) -> None:
  """Measures the input pipeline's throughput on this machine."""
  from stir_jax.data import pipeline  # pylint: disable=g-import-not-at-top

  data = stir_file.load_stir(args.file)
  try:
    result = pipeline.benchmark(data, split=args.split, scenario=args.scenario,
                                batch_size=args.batch_size, seconds=args.seconds,
                                shuffle=not args.no_shuffle)
  except ValueError as e:
    raise CommandError(str(e)) from None
  print(f"file: {args.file}")
  for key, value in result.items():
    print(f"{key}: {value:.1f}" if isinstance(value, float) else f"{key}: {value}")
  print(f"for scale: the paper's fastest model (standard, mnist Mid2Rest) consumed about "
        f"{PAPER_FASTEST_CONSUMER} examples/s in training; this pipeline gives "
        f"{result['examples_per_second'] / PAPER_FASTEST_CONSUMER:.1f}x that")


def _check(args: argparse.Namespace) -> None:
  """Loads a STIR or MNIST-scale file with full validation and prints its summary."""
  from stir_jax.data import mnist_scale  # pylint: disable=g-import-not-at-top
  if mnist_scale.is_mnist_scale_file(args.file):
    data = mnist_scale.load_mnist_scale(args.file)
    print(f"file: {args.file}: OK")
    print(mnist_scale.summarize(data))
    return
  data = stir_file.load_stir(args.file, validate=True)
  print(f"file: {args.file}: OK")
  print(stir_file.summarize(data))


def _show(args: argparse.Namespace) -> None:
  """Draws every class at a few scales (instance 0 of one split) into a PNG; for an MNIST-scale
  file, per class the digits whose scale factor s is nearest to each of a few values."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  from stir_jax.data import mnist_scale  # pylint: disable=g-import-not-at-top

  if mnist_scale.is_mnist_scale_file(args.file):
    try:
      spec = args.scales or ",".join(map(str, DEFAULT_SHOW_FACTORS))
      factors = [float(s) for s in spec.split(",")]
    except ValueError:
      raise CommandError(f"--scales must be comma-separated numbers, got {args.scales!r}") from None
    data = mnist_scale.load_mnist_scale(args.file)
    lo, hi = data.scale_range
    for f in factors:
      if not lo <= f <= hi:
        raise CommandError(f"--scales values must be scale factors in {lo:g}..{hi:g} for this "
                           f"MNIST-scale file, got {f:g}")
    images, labels, scales = (d[args.split] for d in (data.images, data.labels, data.scales))
    rows = []
    for c in range(data.num_classes):
      members = np.flatnonzero(labels == c)
      picks = [members[np.argmin(np.abs(scales[members] - f))] for f in factors]
      rows.append(([images[i][..., None] for i in picks], [f"{scales[i]:.2f}" for i in picks]))
    title = (f"{data.metadata.get('title', args.file)}: {args.split} split, the digits nearest "
             f"s = {', '.join(f'{f:g}' for f in factors)}")
    _draw_strips(args, rows, data.lbldata, title)
    return

  try:
    scales = [int(s) for s in (args.scales or ",".join(map(str, DEFAULT_SHOW_SCALES))).split(",")]
  except ValueError:
    raise CommandError(f"--scales must be comma-separated integers, got {args.scales!r}") from None
  for s in scales:
    if not stir_file.MIN_SCALE <= s <= stir_file.MAX_SCALE:
      raise CommandError(f"--scales values must be in 17..64, got {s}")
  data = stir_file.load_stir(args.file, validate=True)
  split = stir_file.SPLITS.index(args.split)
  rows = []
  for c in range(data.num_classes):
    tiles = [data.imgs[split, stir_file.index_of_scale(s), c, 0] for s in scales]
    rows.append(([t if t.ndim == 3 else t[..., None] for t in tiles], None))
  title = (f"{data.metadata.get('title', str(args.file))}: {args.split} split, "
           f"s = {', '.join(map(str, scales))}")
  _draw_strips(args, rows, data.lbldata, title)


def _draw_strips(args: argparse.Namespace, rows: list, names: Sequence[str], title: str) -> None:
  """One panel per class: its tiles side by side (with their captions under them, if any)."""
  matplotlib = _optional.require("matplotlib", extra="data")
  matplotlib.use("Agg")
  plt = _optional.require("matplotlib.pyplot", extra="data")
  import numpy as np  # pylint: disable=g-import-not-at-top

  n, per_row = len(rows), len(rows[0][0])
  side = rows[0][0][0].shape[0]
  gap = max(2, side // 16)
  cols = min(args.columns, n)
  grid_rows = math.ceil(n / cols)
  fig, axes = plt.subplots(grid_rows, cols, figsize=(cols * 0.55 * per_row, grid_rows * 0.95 + 0.4),
                           squeeze=False)
  for c in range(grid_rows * cols):
    ax = axes[c // cols, c % cols]
    ax.axis("off")
    if c >= n:
      continue
    tiles, captions = rows[c]
    parts = []
    for t in tiles:
      parts += [t, np.full((side, gap, t.shape[-1]), 128, np.uint8)]
    strip = np.concatenate(parts[:-1], axis=1)
    ax.imshow(strip[..., 0] if strip.shape[-1] == 1 else strip, cmap="gray", vmin=0, vmax=255,
              interpolation="nearest")
    ax.set_title(names[c], fontsize=6, pad=2)
    for k, caption in enumerate(captions or ()):
      ax.text((k + 0.5) * (side + gap), side + 1, caption, fontsize=4, ha="center", va="top")
  fig.suptitle(title, fontsize=8)
  fig.tight_layout()
  out = pathlib.Path(args.out)
  out.parent.mkdir(parents=True, exist_ok=True)
  fig.savefig(out, dpi=args.dpi)
  plt.close(fig)
  print(f"wrote {out}")


def build_parser() -> argparse.ArgumentParser:
  """The argparse parser of ``python -m stir_jax.data``."""
  parser = _Parser(prog="python -m stir_jax.data", description=__doc__.splitlines()[0])
  sub = parser.add_subparsers(dest="command", required=True,
                              metavar="{generate,mnist-scale,check,show,bench}")

  gen = sub.add_parser("generate", help="generate a STIR file")
  gen.add_argument("--domain", required=True,
                   help=f"one of {', '.join(DOMAINS)}, tfds:NAME or tfds-boxes:NAME")
  gen.add_argument("--out", required=True, help="destination .npz (parent folders are created)")
  gen.add_argument("--source", default=None,
                   help="raw dataset folder (mnist/fashion_mnist IDX files; trafficsign MTSD v2; "
                        "aerial DOTA v1.5)")
  gen.add_argument("--seed", type=int, default=42, help="numpy RandomState seed (default 42)")
  gen.add_argument("--instances", type=int, default=None,
                   help="objects per class and split (mnist 50, trafficsign/aerial 25, tfds 50, "
                        "tfds-boxes 25)")
  gen.add_argument("--classes", type=int, default=None,
                   help="only the first K classes (mnist, fashion_mnist, tfds:, tfds-boxes:)")
  gen.add_argument("--data-dir", default=None, help="TFDS data folder (tfds: domains)")
  gen.add_argument("--icons", type=int, default=None, help="only the first N emoji icons")
  gen.add_argument("--force", action="store_true", help="overwrite an existing file")
  gen.add_argument("--quiet", action="store_true", help="no progress bar")
  gen.set_defaults(func=_generate)

  scale = sub.add_parser(
      "mnist-scale", help="generate one MNIST-scale realisation (Sosnovik et al. 2020 recipe)")
  scale.add_argument("--out", required=True, help="destination .npz (parent folders are created)")
  scale.add_argument("--idx-dir", default=None,
                     help="folder with the four MNIST-layout IDX files (default: TFDS --domain)")
  scale.add_argument("--domain", choices=("mnist", "fashion_mnist"), default="mnist",
                     help="class names and licence of the source (and the TFDS dataset read "
                          "without --idx-dir)")
  scale.add_argument("--seed", type=int, default=0, help="the realisation (the benchmark: 0..5)")
  scale.add_argument("--train-size", type=int, default=10_000)
  scale.add_argument("--val-size", type=int, default=2_000)
  scale.add_argument("--test-size", type=int, default=50_000)
  scale.add_argument("--min-scale", type=float, default=0.3)
  scale.add_argument("--max-scale", type=float, default=1.0)
  scale.add_argument("--data-dir", default=None, help="TFDS data folder (without --idx-dir)")
  scale.add_argument("--force", action="store_true", help="overwrite an existing file")
  scale.add_argument("--quiet", action="store_true", help="no progress bar")
  scale.set_defaults(func=_mnist_scale)

  check = sub.add_parser("check", help="validate a STIR or MNIST-scale file, print its summary")
  check.add_argument("file")
  check.set_defaults(func=_check)

  show = sub.add_parser("show", help="draw every class at a few scales into a PNG (STIR "
                                   "or MNIST-scale)")
  show.add_argument("file")
  show.add_argument("--out", required=True, help="destination image, e.g. grid.png")
  show.add_argument("--split", choices=stir_file.SPLITS, default="test")
  show.add_argument("--scales", default=None,
                    help="comma-separated object sizes (STIR; default 64,48,33,17), or scale "
                         "factors (MNIST-scale; default 1,0.8,0.6,0.45,0.3)")
  show.add_argument("--columns", type=int, default=6, help="classes per row")
  show.add_argument("--dpi", type=int, default=150)
  show.set_defaults(func=_show)

  bench = sub.add_parser("bench", help="measure the input pipeline's examples per second")
  bench.add_argument("file")
  bench.add_argument("--split", default="train", help="train, valid, test or test_all")
  bench.add_argument("--scenario", default="4", help="1..4 or a name (default 4, All2All)")
  bench.add_argument("--batch-size", type=int, default=16, help="global batch (default 16)")
  bench.add_argument("--seconds", type=float, default=5.0, help="how long to measure")
  bench.add_argument("--no-shuffle", action="store_true")
  bench.set_defaults(func=_bench)
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
  except (CommandError, stir_file.StirFileError, _optional.MissingExtraError) as e:
    sys.stderr.write(f"error: {' '.join(str(e).split())}\n")
    return 2
  except Exception as e:  # pylint: disable=broad-except
    # Anything else (an unwritable folder, a missing package) is still one line, no traceback.
    sys.stderr.write(f"error: {type(e).__name__}: {' '.join(str(e).split())}\n")
    return 2
  return 0


if __name__ == "__main__":
  sys.exit(main())
