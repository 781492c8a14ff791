"""The STIR npz file format: loading with validation, atomic saving, summaries.

A STIR file (Altstidl et al. 2022, Zenodo record 6578038) is an ``.npz`` archive with

==========  ===============================================  =====================================
key         shape                                            meaning
==========  ===============================================  =====================================
imgs        (3, 48, n, m, 64, 64) or (3, 48, n, m, 64, 64, 3)  uint8 images: split x scale index x
                                                             class x instance
lbls        (3, 48, n, m)                                    class index in [0, n)
scls        (3, 48, n, m)                                    object size s; scale index i holds
                                                             s = 64 - i
psts        (3, 48, n, m, 2)                                 (x, y) = (column, row) of the
                                                             object's top-left corner
metadata    (6, 2) str                                       (key, value) rows: title, description,
                                                             author, license, version, date
lbldata     (n,) str                                         class names
==========  ===============================================  =====================================

Splits are (train, valid, test). Some published files were written without the instance axis
(the emoji and mnist generators stack one image per class: imgs (3, 48, n, 64, 64), lbls (3, 48, n),
psts (3, 48, n, 2)); `load_stir` recognises that layout from ``lbls.ndim == 3`` and inserts m = 1,
so every `StirData` has the instance axis.

Example:

  >>> data = load_stir("data/emoji.npz")
  >>> data.imgs.shape, data.num_classes, data.num_channels
  ((3, 48, 36, 1, 64, 64), 36, 1)
"""
from __future__ import annotations

import dataclasses
import os
import pathlib
import tempfile
import zipfile
import zlib
from typing import ClassVar, Union

import numpy as np

PathLike = Union[str, os.PathLike]

IMAGE_SIZE = 64
NUM_SPLITS = 3
NUM_SCALES = 48
MAX_SCALE = 64
MIN_SCALE = MAX_SCALE - NUM_SCALES + 1  # 17
SPLITS = ("train", "valid", "test")
REQUIRED_KEYS = ("imgs", "lbls", "scls", "psts", "metadata", "lbldata")
METADATA_KEYS = ("title", "description", "author", "license", "version", "date")

# Errors that np.load and the lazy reads of an NpzFile raise on damaged or foreign files.
_READ_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, ValueError, OSError, KeyError)


class StirFileError(ValueError):
  """A STIR file is missing, unreadable or inconsistent.

  The message is a single line ``"<path>: <problem>"``.
  """

  def __init__(self, path: PathLike | None, problem: str):
    self.path = None if path is None else os.fspath(path)
    self.problem = " ".join(str(problem).split())  # Force one line.
    where = self.path if self.path is not None else "<in-memory STIR data>"
    super().__init__(f"{where}: {self.problem}")


def scale_of_index(index: int) -> int:
  """The object size s stored at scale index ``index`` (0 -> 64, 47 -> 17)."""
  return MAX_SCALE - index


def index_of_scale(scale: int) -> int:
  """The scale index holding object size ``scale`` (64 -> 0, 17 -> 47)."""
  if not MIN_SCALE <= scale <= MAX_SCALE:
    raise ValueError(f"scale must be in {MIN_SCALE}..{MAX_SCALE}, got {scale}")
  return MAX_SCALE - scale


@dataclasses.dataclass
class StirData:
  """The contents of one STIR file, always with the instance axis.

  Attributes:
    imgs: (3, 48, n, m, 64, 64) or (3, 48, n, m, 64, 64, 3) uint8 images.
    lbls: (3, 48, n, m) integer class indices in [0, n).
    scls: (3, 48, n, m) integer object sizes; ``scls[:, i] == 64 - i``.
    psts: (3, 48, n, m, 2) integer (x, y) top-left corners of the object's s x s box.
    metadata: title, description, author, license, version, date (str -> str).
    lbldata: the n class names.
  """
  kind: ClassVar[str] = "stir"  # the registry's model kind that takes it
  imgs: np.ndarray
  lbls: np.ndarray
  scls: np.ndarray
  psts: np.ndarray
  metadata: dict[str, str]
  lbldata: list[str]

  @property
  def num_classes(self) -> int:
    """n, the number of classes."""
    return int(self.imgs.shape[2])

  @property
  def num_instances(self) -> int:
    """m, the number of objects per class (per split and scale)."""
    return int(self.imgs.shape[3])

  @property
  def num_channels(self) -> int:
    """1 for grey files, 3 for colour files."""
    return 1 if self.imgs.ndim == 6 else int(self.imgs.shape[-1])

  def images(self, split: int) -> np.ndarray:
    """The images of split 0, 1 or 2 (train, validation, test) with a channel axis, grey files
    included: (48, n, m, 64, 64, C) uint8 (a view)."""
    imgs = self.imgs[split]
    return imgs[..., None] if imgs.ndim == 5 else imgs

  @property
  def scales(self) -> list[int]:
    """Object sizes by scale index: [64, 63, ..., 17]."""
    return [scale_of_index(i) for i in range(self.imgs.shape[1])]


def _as_str_list(array: np.ndarray) -> list[str]:
  """Converts a unicode or bytes array to a flat list of str."""
  if array.dtype.kind == "S":
    return [b.decode("utf-8", errors="replace") for b in array.reshape(-1)]
  return [str(s) for s in array.reshape(-1)]


def check_structure(data: StirData, path: PathLike | None = None) -> None:
  """Checks keys' shapes and dtypes; raises StirFileError naming ``path`` on the first problem."""
  imgs, lbls, scls, psts = data.imgs, data.lbls, data.scls, data.psts
  if imgs.dtype != np.uint8:
    raise StirFileError(path, f"imgs has dtype {imgs.dtype}, expected uint8")
  if imgs.ndim not in (6, 7) or (imgs.ndim == 7 and imgs.shape[-1] != 3):
    raise StirFileError(
        path, f"imgs has shape {imgs.shape}, expected (3, 48, n, m, 64, 64) or "
        "(3, 48, n, m, 64, 64, 3)")
  if imgs.shape[:2] != (NUM_SPLITS, NUM_SCALES):
    raise StirFileError(
        path, f"imgs has shape {imgs.shape}, expected 3 splits x 48 scales in front")
  if imgs.shape[4:6] != (IMAGE_SIZE, IMAGE_SIZE):
    raise StirFileError(path, f"imgs has shape {imgs.shape}, expected 64 x 64 images")
  n, m = imgs.shape[2:4]
  if n < 1 or m < 1:
    raise StirFileError(path, f"imgs has shape {imgs.shape}: no classes or no instances")
  grid = imgs.shape[:4]
  for key, array, shape in (("lbls", lbls, grid), ("scls", scls, grid),
                            ("psts", psts, grid + (2,))):
    if array.shape != shape:
      raise StirFileError(path, f"{key} has shape {array.shape}, expected {shape}")
    if array.dtype.kind not in "iu":
      raise StirFileError(path, f"{key} has dtype {array.dtype}, expected an integer dtype")
  if len(data.lbldata) != n:
    raise StirFileError(path, f"lbldata names {len(data.lbldata)} classes, imgs has {n}")


def position_rule(data: StirData) -> str:
  """The position check a file gets: "corner" for the published aerial file, else "box".

  Every domain but aerial has square objects whose s x s box lies inside the image. The published
  aerial objects are s long on their longer side only, and its generator kept the *object* (not
  an s x s square) inside the 64 x 64 window, so there y + s may exceed 64 for a wide object; such
  files (title naming "Aerial") are checked with the weaker "corner" rule: the top-left corner lies
  inside the image. Files written by this package always satisfy "box".
  """
  return "corner" if "aerial" in data.metadata.get("title", "").lower() else "box"


def check_values(data: StirData, path: PathLike | None = None, positions: str = "box") -> None:
  """Checks labels, scales and positions; raises StirFileError naming ``path`` on a problem.

  Args:
    data: the dataset.
    path: named in the error.
    positions: "box": the s x s box at (x, y) lies inside the 64 x 64 image; "corner": only
      (x, y) does (see `position_rule`).
  """
  if positions not in ("box", "corner"):
    raise ValueError(f"positions must be 'box' or 'corner', got {positions!r}")
  n = data.num_classes
  lbls = data.lbls.astype(np.int64)
  bad = (lbls < 0) | (lbls >= n)
  if bad.any():
    where = tuple(int(i) for i in np.argwhere(bad)[0])
    raise StirFileError(
        path, f"lbls{list(where)} = {lbls[where]} is outside the class range 0..{n - 1}")
  expected = np.arange(MAX_SCALE, MAX_SCALE - NUM_SCALES, -1).reshape(1, -1, 1, 1)
  scls = data.scls.astype(np.int64)
  bad = scls != expected
  if bad.any():
    where = tuple(int(i) for i in np.argwhere(bad)[0])
    raise StirFileError(
        path, f"scls{list(where)} = {scls[where]}, expected 64 - scale index = "
        f"{MAX_SCALE - where[1]}")
  psts = data.psts.astype(np.int64)
  x, y = psts[..., 0], psts[..., 1]
  extent = scls if positions == "box" else 1
  bad = (x < 0) | (y < 0) | (x + extent > IMAGE_SIZE) | (y + extent > IMAGE_SIZE)
  if bad.any():
    where = tuple(int(i) for i in np.argwhere(bad)[0])
    raise StirFileError(
        path, f"psts{list(where)} = (x={x[where]}, y={y[where]}) puts the {scls[where]}x"
        f"{scls[where]} object outside the 64x64 image")


def load_stir(path: PathLike, validate: bool = True) -> StirData:
  """Loads a STIR npz file (the published Zenodo files load unchanged).

  Args:
    path: the ``.npz`` file.
    validate: also check label range, ``scls == 64 - index`` and that every object lies inside
      its image (see `position_rule` for the published aerial file). Keys, shapes and dtypes are
      always checked.

  Returns:
    The file's arrays as a `StirData` (with the instance axis).

  Raises:
    StirFileError: a missing, unreadable, truncated or inconsistent file (one-line message).
  """
  path = pathlib.Path(path)
  if not path.exists():
    raise StirFileError(path, "file not found")
  if path.is_dir():
    raise StirFileError(path, "is a directory, expected an .npz file")
  try:
    archive = np.load(path, allow_pickle=False)
    if not isinstance(archive, np.lib.npyio.NpzFile):
      raise StirFileError(path, "is a single .npy array, expected an .npz archive")
    with archive:
      missing = [k for k in REQUIRED_KEYS if k not in archive.files]
      if missing:
        raise StirFileError(
            path, f"missing key(s) {', '.join(missing)} (has: {', '.join(archive.files)})")
      arrays = {k: archive[k] for k in REQUIRED_KEYS}
  except StirFileError:
    raise
  except _READ_ERRORS as e:
    raise StirFileError(
        path, f"cannot read as an .npz archive (truncated or not a STIR file): "
        f"{type(e).__name__}: {e}") from None

  metadata, lbldata = arrays["metadata"], arrays["lbldata"]
  for key, array in (("metadata", metadata), ("lbldata", lbldata)):
    if array.dtype.kind not in "US":
      raise StirFileError(path, f"{key} has dtype {array.dtype}, expected strings")
  if metadata.ndim != 2 or metadata.shape[1] != 2:
    raise StirFileError(
        path, f"metadata has shape {metadata.shape}, expected (6, 2) key/value rows")
  if lbldata.ndim != 1:
    raise StirFileError(path, f"lbldata has shape {lbldata.shape}, expected (n,)")

  imgs, lbls, scls, psts = (arrays[k] for k in ("imgs", "lbls", "scls", "psts"))
  if lbls.ndim == 3:  # Published layout without the instance axis: insert m = 1.
    imgs, lbls, scls, psts = (np.expand_dims(a, 3) for a in (imgs, lbls, scls, psts))
  keys = _as_str_list(metadata[:, 0])
  values = _as_str_list(metadata[:, 1])
  data = StirData(imgs=imgs, lbls=lbls, scls=scls, psts=psts,
                  metadata=dict(zip(keys, values)), lbldata=_as_str_list(lbldata))
  check_structure(data, path)
  if validate:
    check_values(data, path, positions=position_rule(data))
  return data


def save_stir(path: PathLike, data: StirData, compress: bool = True) -> pathlib.Path:
  """Validates ``data`` and writes it atomically as a STIR npz file.

  The archive is written to a temporary file in the target's folder and moved into place with
  `os.replace`, so a failure never leaves a partial file or damages an existing one.

  Args:
    path: the destination (the folder must exist); written exactly as given (no ``.npz`` added).
    data: the dataset; metadata and lbldata are stored as unicode arrays (no pickling).
    compress: use ``np.savez_compressed``.

  Returns:
    The destination path.

  Raises:
    StirFileError: ``data`` is inconsistent (nothing is written).
  """
  path = pathlib.Path(path)
  check_structure(data, path)
  check_values(data, path)
  metadata = np.array([[str(k), str(v)] for k, v in data.metadata.items()], dtype=str)
  if metadata.size == 0:
    metadata = np.zeros((0, 2), dtype="<U1")
  arrays = dict(imgs=data.imgs, lbls=data.lbls, scls=data.scls, psts=data.psts,
                metadata=metadata, lbldata=np.array(list(data.lbldata), dtype=str))
  savez = np.savez_compressed if compress else np.savez
  fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp",
                                  dir=path.parent if str(path.parent) else ".")
  try:
    with os.fdopen(fd, "wb") as f:
      savez(f, **arrays)
      f.flush()
      os.fsync(f.fileno())
    os.chmod(tmp_name, 0o666 & ~_umask())  # mkstemp creates 0600; use the usual file mode.
    os.replace(tmp_name, path)
  except BaseException:
    try:
      os.unlink(tmp_name)
    except OSError:
      pass
    raise
  return path


def _umask() -> int:
  """The process's file-creation mask."""
  mask = os.umask(0o022)
  os.umask(mask)
  return mask


def summarize(data: StirData) -> str:
  """A multi-line, human-readable summary of a STIR dataset.

  Example output (first lines)::

    title: Scaled and Translated Image Recognition (STIR) Emoji (version 1.0.0, ...)
    imgs: (3, 48, 36, 1, 64, 64) uint8
  """
  meta = data.metadata
  scales = data.scales
  per_split = len(scales) * data.num_classes * data.num_instances
  names = ", ".join(data.lbldata[:8]) + (", ..." if data.num_classes > 8 else "")
  split_counts = ", ".join(f"{s} {per_split}" for s in SPLITS)
  lines = [
      f"title: {meta.get('title', '?')}",
      f"version: {meta.get('version', '?')} ({meta.get('date', '?')})",
      f"author: {meta.get('author', '?')}",
      f"license: {meta.get('license', '?')}",
      f"imgs: {data.imgs.shape} {data.imgs.dtype}, pixel range {int(data.imgs.min())}.."
      f"{int(data.imgs.max())}",
      f"classes: {data.num_classes} ({names})",
      f"instances per class: {data.num_instances}",
      f"channels: {data.num_channels}",
      f"scales: {min(scales)}..{max(scales)} ({len(scales)} sizes, index i holds s = 64 - i)",
      f"images per split: {split_counts} (total {NUM_SPLITS * per_split})",
      f"positions: x {int(data.psts[..., 0].min())}..{int(data.psts[..., 0].max())}, "
      f"y {int(data.psts[..., 1].min())}..{int(data.psts[..., 1].max())}",
  ]
  return "\n".join(lines)
