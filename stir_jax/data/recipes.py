"""Image recipes and helpers shared by the STIR generators (numpy, scipy and PIL only).

Two recipes make every STIR image (DESIGN.md §1):

* the *digit* recipe (`digit_image`, used by mnist / fashion_mnist, and without its blur and
  contrast by `tfds:` classification datasets): the whole source image is resized to s x s and
  pasted into a black 64 x 64 canvas at a seeded position;
* the *crop* recipe (`crop_object`, used by trafficsign, aerial and `tfds-boxes:` datasets): a
  photo is resized so that the object measures s and a 64 x 64 window around it is cut out.

Also here: the user-facing `GenerationError`, seeded per-class selection (`pick_per_class`),
`SkipCounter` for images that fail to decode, and `make_metadata`.
"""
from __future__ import annotations

import dataclasses
import datetime
from typing import Mapping, Sequence

import numpy as np

from stir_jax import _optional
from stir_jax.data import stir_file

IMAGE_SIZE = stir_file.IMAGE_SIZE
AUTHOR = "stir_jax authors, after T. R. Altstidl et al., STIR (2022)"


class GenerationError(ValueError):
  """A generator cannot run on its input (missing source, bad archive, too few objects, ...).

  The message is one line and names the problem and, where useful, how to fix it.
  """

  def __init__(self, message: str):
    super().__init__(" ".join(str(message).split()))


# --- the digit recipe --------------------------------------------------------------------------

def _to_float(image: np.ndarray) -> np.ndarray:
  return np.asarray(image, dtype=np.float64)


def resize_spline(image: np.ndarray, size: int) -> np.ndarray:
  """Resizes a (h, w) or (h, w, c) image to (size, size[, c]) as the STIR authors did.

  The published generator calls ``skimage.transform.resize(image, (s, s), order=3,
  preserve_range=True)``: a cubic *B-spline* interpolation (not Keys' bicubic convolution of PIL or
  PyTorch), pixel centres aligned (half-pixel convention), mirror-reflected borders, the result
  clipped to the input's value range, and - since skimage anti-aliases by default whenever an axis
  shrinks - a Gaussian pre-filter with sigma = max(0, (in / out - 1) / 2) per axis. This function
  reproduces exactly that with scipy.ndimage (skimage is not a dependency; a test compares the
  two when skimage happens to be installed). Colour channels are resized independently.

  Args:
    image: (h, w) or (h, w, c), any real dtype; values are kept (no rescaling to [0, 1]).
    size: the output side s.

  Returns:
    (size, size) or (size, size, c) float64.
  """
  image = _to_float(image)
  if image.ndim == 3:  # Channel by channel: equal to skimage's 3-D call (zoom 1 along channels
    # reproduces the knots), and much faster than a 3-D spline.
    out = np.stack([_resize_plane(image[..., c], size) for c in range(image.shape[-1])], -1)
  else:
    out = _resize_plane(image, size)
  return np.clip(out, image.min(), image.max())


def _resize_plane(image: np.ndarray, size: int) -> np.ndarray:
  """`resize_spline` of one (h, w) float64 plane, before clipping."""
  from scipy import ndimage  # pylint: disable=g-import-not-at-top

  factors = np.array(image.shape, dtype=np.float64) / size
  sigma = np.maximum(0.0, (factors - 1.0) / 2.0)
  filtered = image
  if np.any(sigma > 0):
    filtered = ndimage.gaussian_filter(image, sigma, mode="mirror")
  zoom = [size / image.shape[0], size / image.shape[1]]
  return ndimage.zoom(filtered, zoom, order=3, mode="mirror", grid_mode=True)


def place(patch: np.ndarray, x: int, y: int, size: int = IMAGE_SIZE) -> np.ndarray:
  """Pastes an (s, s[, c]) patch into a zero (size, size[, c]) canvas, top-left at column x, row y."""
  s = patch.shape[0]
  if not (0 <= x <= size - s and 0 <= y <= size - s):
    raise ValueError(f"a {s}x{s} patch at (x={x}, y={y}) does not fit a {size}x{size} image")
  canvas = np.zeros((size, size) + patch.shape[2:], dtype=patch.dtype)
  canvas[y:y + s, x:x + s] = patch
  return canvas


def digit_contrast(image: np.ndarray, size: int) -> np.ndarray:
  """The digit recipe's blur, contrast and range steps on a placed (64, 64) float image.

  Gaussian blur with sigma = 7/8 * s/28 (skimage.filters.gaussian defaults: nearest-edge borders,
  truncated at 4 sigma), then 2/pi * atan(0.02 * (x - 128)), then min-max to 0..255, truncated to
  uint8 as the published generator does (``astype(np.uint8)``, no rounding).

  Args:
    image: (64, 64) float, values in the source's 0..255 range.
    size: the object size s (sets the blur).

  Returns:
    (64, 64) uint8.
  """
  from scipy import ndimage  # pylint: disable=g-import-not-at-top

  blurred = ndimage.gaussian_filter(_to_float(image), 7.0 / 8.0 * size / 28.0, mode="nearest",
                                    truncate=4.0)
  curved = 2.0 / np.pi * np.arctan(0.02 * (blurred - 128.0))
  return minmax_uint8(curved)


def minmax_uint8(image: np.ndarray) -> np.ndarray:
  """Maps an image's range to 0..255 and truncates to uint8 (a constant image gives zeros)."""
  image = _to_float(image)
  low, high = image.min(), image.max()
  if high <= low:
    return np.zeros(image.shape, np.uint8)
  return (255.0 * (image - low) / (high - low)).astype(np.uint8)


def digit_image(source: np.ndarray, size: int, x: int, y: int, contrast: bool = True) -> np.ndarray:
  """One STIR image by the digit recipe.

  Args:
    source: (h, w) or (h, w, c) uint8, the whole source image (e.g. a 28 x 28 MNIST digit).
    size: s, the side of the object's box.
    x: column of the box's top-left corner in the 64 x 64 image.
    y: row of the box's top-left corner.
    contrast: apply `digit_contrast` (mnist recipe; grey images only). Without it (the ``tfds:``
      recipe) the resized image is rounded and clipped to uint8 and colour is kept.

  Returns:
    (64, 64) or (64, 64, c) uint8; the object covers rows y..y+s-1, columns x..x+s-1.
  """
  resized = resize_spline(source, size)
  if contrast:
    if resized.ndim == 3:
      resized = resized[..., 0] if resized.shape[-1] == 1 else resized.mean(-1)
    return digit_contrast(place(resized, x, y), size)
  patch = np.clip(np.rint(resized), 0, 255).astype(np.uint8)
  return place(patch, x, y)


# --- the crop recipe ---------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Box:
  """An axis-aligned object box in photo pixels: columns xmin..xmax, rows ymin..ymax (exclusive)."""
  xmin: float
  ymin: float
  xmax: float
  ymax: float

  @property
  def width(self) -> float:
    return self.xmax - self.xmin

  @property
  def height(self) -> float:
    return self.ymax - self.ymin


def crop_window(start: int, size: int, photo: int, rng: np.random.RandomState) -> int:
  """A seeded window origin along one axis that keeps [start, start + size) inside [o, o + 64).

  The window stays inside the photo when the photo is at least 64 long; a shorter photo lies
  wholly inside the window instead (the rest is zero padding).
  """
  lower = max(start + size - IMAGE_SIZE, min(0, photo - IMAGE_SIZE))
  upper = min(start, max(0, photo - IMAGE_SIZE))
  if upper < lower:  # Only when rounding pushed the object past the photo's edge.
    upper = lower = min(max(start + size - IMAGE_SIZE, 0), start)
  return int(rng.randint(lower, upper + 1))


def crop_object(photo, box: Box, size: int, rng: np.random.RandomState,
                keep_aspect: bool) -> tuple[np.ndarray, tuple[int, int]]:
  """One STIR image by the crop recipe.

  The photo is resized with PIL's antialiasing (Lanczos) filter so that the object measures s:
  with ``keep_aspect=False`` (trafficsign) width and height are scaled separately so the box
  becomes s x s; with ``keep_aspect=True`` (aerial, tfds-boxes) both by s / max(w, h). A 64 x 64
  window is then cut at a seeded offset that keeps the object's s x s box (anchored at its top-left
  corner) inside. Only that window is computed: PIL's ``resize(box=...)`` with the window's source
  rectangle gives the pixels of resizing the whole photo and cropping (filter taps reach past the
  rectangle into the photo as they would in the full resize) at a fraction of the cost; a few
  pixels in ten thousand may differ by 1, where floating-point rounding of the filter weights
  differs between the two (a test checks this bound).

  A photo that is narrower or shorter than 64 pixels after resizing lies wholly inside the window,
  at a seeded offset, and the rest of the window is black (zeros).

  Args:
    photo: a PIL image (RGB or L).
    box: the object's box in photo pixels.
    size: s, 17..64.
    rng: draws the window offset (one ``randint`` for x, then one for y).
    keep_aspect: see above.

  Returns:
    (64, 64, c) uint8 window and (x, y), the object's top-left corner inside it.
  """
  Image = _optional.require("PIL.Image", extra="data")

  width, height = photo.size
  if keep_aspect:
    fx = fy = size / max(box.width, box.height)
  else:
    fx, fy = size / box.width, size / box.height
  new_w, new_h = max(1, round(width * fx)), max(1, round(height * fy))
  sx, sy = width / new_w, height / new_h  # Exact source pixels per output pixel, as PIL uses.
  xstart, ystart = round(box.xmin / sx), round(box.ymin / sy)
  x0 = crop_window(xstart, size, new_w, rng)
  y0 = crop_window(ystart, size, new_h, rng)
  # The part of the window that lies on the resized photo.
  cx0, cy0 = max(x0, 0), max(y0, 0)
  cx1, cy1 = min(x0 + IMAGE_SIZE, new_w), min(y0 + IMAGE_SIZE, new_h)
  bands = len(photo.getbands())
  window = np.zeros((IMAGE_SIZE, IMAGE_SIZE, bands), np.uint8)
  if cx1 > cx0 and cy1 > cy0:
    part = photo.resize((cx1 - cx0, cy1 - cy0), Image.Resampling.LANCZOS,
                        box=(cx0 * sx, cy0 * sy, cx1 * sx, cy1 * sy))
    pixels = np.asarray(part, dtype=np.uint8).reshape(cy1 - cy0, cx1 - cx0, bands)
    window[cy0 - y0:cy1 - y0, cx0 - x0:cx1 - x0] = pixels
  return window, (xstart - x0, ystart - y0)


# --- selection, bookkeeping, metadata ----------------------------------------------------------

def pick_per_class(labels: np.ndarray, classes: Sequence[int], count: int, seed: int,
                   what: str = "images") -> dict[int, np.ndarray]:
  """For each class, the indices of its first ``count`` examples after a seeded shuffle.

  Each class is shuffled with its own ``RandomState(seed)`` (the published mnist generator
  shuffles every digit's images this way), so a class's pick does not depend on the others.

  Args:
    labels: (N,) integer labels.
    classes: the classes to pick from.
    count: examples per class.
    seed: the shuffle seed.
    what: how the error message calls the examples.

  Raises:
    GenerationError: a class has fewer than ``count`` examples (names it and its count).
  """
  labels = np.asarray(labels)
  picks = {}
  short = []
  for label in classes:
    members = np.flatnonzero(labels == label)
    if len(members) < count:
      short.append(f"class {label} has {len(members)}")
      continue
    members = members.copy()
    np.random.RandomState(seed).shuffle(members)
    picks[label] = members[:count]
  if short:
    raise GenerationError(
        f"too few {what}: {count} per class are needed but {'; '.join(short)}")
  return picks


class SkipCounter:
  """Counts inputs that were skipped (e.g. images that failed to decode) and says which."""

  def __init__(self, what: str = "image(s) failed to decode and were skipped"):
    self.what = what
    self.count = 0
    self.examples: list[str] = []

  def add(self, name: str, reason: str) -> None:
    self.count += 1
    if len(self.examples) < 3:
      self.examples.append(f"{name} ({' '.join(reason.split())[:80]})")

  def report(self) -> str:
    """One line: '3 image(s) failed to decode and were skipped: a.jpg (...), ...' or ''."""
    if not self.count:
      return ""
    more = ", ..." if self.count > len(self.examples) else ""
    return f"{self.count} {self.what}: {', '.join(self.examples)}{more}"


def make_metadata(title: str, description: str, license_text: str, version: str = "1.0.0"
                  ) -> dict[str, str]:
  """The six metadata rows of a generated file (author = this project, today's date)."""
  from stir_jax import __version__  # pylint: disable=g-import-not-at-top

  return {
      "title": title,
      "description": " ".join(description.split()),
      "author": AUTHOR,
      "license": license_text,
      "version": f"{version} (stir_jax {__version__})",
      "date": datetime.date.today().isoformat(),
  }


def empty_arrays(num_classes: int, num_instances: int, channels: int
                 ) -> dict[str, np.ndarray]:
  """Zeroed imgs, lbls, scls, psts for n classes x m instances (channels 1: grey layout)."""
  grid = (stir_file.NUM_SPLITS, stir_file.NUM_SCALES, num_classes, num_instances)
  image = (IMAGE_SIZE, IMAGE_SIZE) + ((channels,) if channels != 1 else ())
  return {
      "imgs": np.zeros(grid + image, np.uint8),
      "lbls": np.broadcast_to(np.arange(num_classes, dtype=np.int32)[None, None, :, None],
                              grid).copy(),
      "scls": np.broadcast_to(
          np.arange(stir_file.MAX_SCALE, stir_file.MIN_SCALE - 1, -1,
                    dtype=np.int32)[None, :, None, None], grid).copy(),
      "psts": np.zeros(grid + (2,), np.int32),
  }


def as_stir(arrays: Mapping[str, np.ndarray], metadata: dict[str, str],
            names: Sequence[str]) -> stir_file.StirData:
  """Wraps generated arrays as StirData."""
  return stir_file.StirData(imgs=arrays["imgs"], lbls=arrays["lbls"], scls=arrays["scls"],
                            psts=arrays["psts"], metadata=metadata,
                            lbldata=[str(n) for n in names])
