"""The STIR emoji domain: Font Awesome Free 5 "face" icons, white on black.

Reproduces the original generator's behaviour (Altstidl et al. 2022):

* every icon is rendered with cairosvg at parent size s (``parent_width = parent_height = s``): the
  icon's SVG has only a viewBox, so its width and height default to 100% of the parent and the
  output canvas is exactly s x s, with the viewBox fitted inside it (aspect kept, centred). The
  object's box is that s x s canvas. Most face icons have a 496 x 512 viewBox whose circle spans
  496 x 496 units, so their ink covers s - 2 .. s pixels in each direction (antialiasing reaches the
  canvas border at most sizes); "grin-tears" (640 x 512) fills the width and 80% of the height.
  Note that cairosvg's ``output_width/output_height`` would give the same canvas here (it rescales
  the same s x s fit); without either option the canvas would be the 496 x 512 viewBox itself.
* the pixel value is the rendered alpha (the original composites white over black through the alpha
  mask and converts to grey, which gives exactly the alpha).
* seeding: one ``RandomState(seed)`` (equivalent to the original ``np.random.seed(42)`` followed by
  global draws); for each icon, for s = 64..17, for split train, valid, test:
  ``x, y = rng.randint(0, 64 - s + 1, 2)`` and the icon goes to rows y..y+s-1, columns x..x+s-1.

Font Awesome Free icons are CC BY 4.0 (https://fontawesome.com/license/free); generated files say so
in their metadata.

Example:

  >>> data = generate_emoji(EMOJI_NAMES[:2], progress=False)
  >>> data.imgs.shape
  (3, 48, 2, 1, 64, 64)
"""
from __future__ import annotations

import datetime
import functools
import importlib.metadata
import io
import pathlib
from typing import Sequence

import numpy as np

from stir_jax import _optional
from stir_jax.data import stir_file

# The 36 regular face icons in label order (label = position in this tuple).
EMOJI_NAMES: tuple[str, ...] = (
    "tired", "surprise", "smile-wink", "smile-beam", "sad-tear", "sad-cry", "meh-rolling-eyes",
    "meh-blank", "laugh-wink", "laugh-squint", "laugh-beam", "laugh", "kiss-wink-heart",
    "kiss-beam", "kiss", "grin-wink", "grin-tongue-wink", "grin-tongue-squint", "grin-tongue",
    "grin-tears", "grin-stars", "grin-squint-tears", "grin-squint", "grin-hearts",
    "grin-beam-sweat", "grin-beam", "grin-alt", "grin", "grimace", "frown-open", "flushed",
    "dizzy", "angry", "smile", "meh", "frown",
)

FONTAWESOME_DIST = "fontawesome-free"
FONTAWESOME_VERSION = "5.15.4"
_INSTALL_HINT = f"pip install {FONTAWESOME_DIST}=={FONTAWESOME_VERSION}"


class FontAwesomeNotFoundError(RuntimeError):
  """The fontawesome-free distribution or one of its SVG icons is unavailable."""


def fontawesome_version() -> str:
  """The installed fontawesome-free version (raises FontAwesomeNotFoundError if missing)."""
  try:
    return importlib.metadata.version(FONTAWESOME_DIST)
  except importlib.metadata.PackageNotFoundError:
    raise FontAwesomeNotFoundError(
        f"the {FONTAWESOME_DIST} package is not installed ({_INSTALL_HINT})") from None


@functools.lru_cache(maxsize=None)
def fontawesome_svg_dir() -> pathlib.Path:
  """The ``svgs/regular`` folder of the installed fontawesome-free distribution.

  The distribution installs a folder named ``fontawesome-free`` (not importable as a module), so it
  is located through the files listed in its metadata. When the icons exist in several copies, the
  one with the shortest path is used.

  Raises:
    FontAwesomeNotFoundError: the distribution is not installed or ships no regular SVGs.
  """
  try:
    dist = importlib.metadata.distribution(FONTAWESOME_DIST)
  except importlib.metadata.PackageNotFoundError:
    raise FontAwesomeNotFoundError(
        f"the {FONTAWESOME_DIST} package is not installed ({_INSTALL_HINT})") from None
  candidates = []
  for file in dist.files or ():
    parts = file.parts
    if len(parts) >= 3 and parts[-3:-1] == ("svgs", "regular") and parts[-1].endswith(".svg"):
      candidates.append(pathlib.Path(dist.locate_file(file)).parent)
  if not candidates:  # No RECORD listing: search the installed folder.
    root = pathlib.Path(dist.locate_file(FONTAWESOME_DIST))
    candidates = [p for p in root.glob("**/svgs/regular") if p.is_dir()]
  candidates = sorted({c for c in candidates if c.is_dir()}, key=lambda p: (len(p.parts), str(p)))
  if not candidates:
    raise FontAwesomeNotFoundError(
        f"{FONTAWESOME_DIST} {dist.version} is installed but has no svgs/regular folder "
        f"({_INSTALL_HINT})")
  return candidates[0]


def icon_path(name: str) -> pathlib.Path:
  """The SVG file of the regular icon ``name`` (e.g. "smile")."""
  path = fontawesome_svg_dir() / f"{name}.svg"
  if not path.is_file():
    raise FontAwesomeNotFoundError(f"no Font Awesome regular icon named {name!r} ({path})")
  return path


def render_icon(name: str, size: int) -> np.ndarray:
  """Renders the regular icon ``name`` on an s x s canvas, white icon on black.

  Args:
    name: a Font Awesome regular icon name, e.g. "smile".
    size: s, the canvas side (the object's box) in pixels.

  Returns:
    (size, size) uint8, the rendered coverage (alpha): 0 background, 255 fully covered.
  """
  cairosvg = _optional.require("cairosvg", extra="data")  # lazily: only generation needs cairo
  Image = _optional.require("PIL.Image", extra="data")

  if size < 1:
    raise ValueError(f"size must be positive, got {size}")
  png = cairosvg.svg2png(url=str(icon_path(name)), parent_width=size, parent_height=size)
  with Image.open(io.BytesIO(png)) as image:
    alpha = np.asarray(image.convert("RGBA"))[..., 3]
  if alpha.shape != (size, size):
    raise RuntimeError(f"cairosvg rendered {name!r} at {alpha.shape}, expected {(size, size)}")
  return np.ascontiguousarray(alpha, dtype=np.uint8)


def emoji_metadata(num_icons: int, seed: int) -> dict[str, str]:
  """Metadata rows for a generated emoji file."""
  from stir_jax import __version__  # pylint: disable=g-import-not-at-top

  version = fontawesome_version()
  return {
      "title": "Scaled and Translated Image Recognition (STIR) Emoji",
      "description": (
          f"{num_icons} Font Awesome face icons rendered at sizes between 17x17 and 64x64 pixels "
          f"at a random position inside the 64x64 image (numpy RandomState seed {seed}). White "
          "icon on black background. Regenerated by stir_jax following the STIR emoji recipe."),
      "author": "stir_jax authors, after T. R. Altstidl et al., STIR (2022)",
      "license": (
          f"CC BY 4.0, modified from Font Awesome Free {version} by @fontawesome - "
          "https://fontawesome.com (License - https://fontawesome.com/license/free)"),
      "version": f"1.0.0 (stir_jax {__version__})",
      "date": datetime.date.today().isoformat(),
  }


def generate_emoji(names: Sequence[str] = EMOJI_NAMES, seed: int = 42,
                   progress: bool = True) -> stir_file.StirData:
  """Generates the STIR emoji dataset (or the subset ``names``, labelled by position).

  Since the draws run icon by icon, generating a prefix of ``EMOJI_NAMES`` gives exactly the first
  classes of the full dataset.

  Args:
    names: icon names; class index = position in ``names``.
    seed: seed of the numpy ``RandomState`` that draws the positions.
    progress: show a tqdm progress bar (on stderr).

  Returns:
    StirData with imgs (3, 48, n, 1, 64, 64) uint8, lbls/scls (3, 48, n, 1) and psts
    (3, 48, n, 1, 2) int32.
  """
  tqdm = _optional.require("tqdm", extra="data").tqdm

  names = list(names)
  if not names:
    raise ValueError("names must not be empty")
  for name in names:
    icon_path(name)  # Fail early on a bad name.
  n, size = len(names), stir_file.IMAGE_SIZE
  grid = (stir_file.NUM_SPLITS, stir_file.NUM_SCALES, n, 1)
  imgs = np.zeros(grid + (size, size), np.uint8)
  lbls = np.zeros(grid, np.int32)
  scls = np.zeros(grid, np.int32)
  psts = np.zeros(grid + (2,), np.int32)
  rng = np.random.RandomState(seed)
  with tqdm(total=n * stir_file.NUM_SCALES, desc="emoji", unit="render",
            disable=not progress) as bar:
    for label, name in enumerate(names):
      for index in range(stir_file.NUM_SCALES):
        s = stir_file.scale_of_index(index)
        icon = render_icon(name, s)  # One render per icon and scale, shared by the 3 splits.
        for split in range(stir_file.NUM_SPLITS):
          x, y = rng.randint(0, size - s + 1, 2)
          imgs[split, index, label, 0, y:y + s, x:x + s] = icon
          lbls[split, index, label, 0] = label
          scls[split, index, label, 0] = s
          psts[split, index, label, 0] = (x, y)
        bar.update(1)
  return stir_file.StirData(imgs=imgs, lbls=lbls, scls=scls, psts=psts,
                            metadata=emoji_metadata(n, seed), lbldata=names)
