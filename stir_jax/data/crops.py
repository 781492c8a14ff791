"""The crop-recipe domains' shared machinery: archive indexing, object selection, generation.

Used by `trafficsign` (Mapillary), `aerial` (DOTA) and `tfds_sources` (``tfds-boxes:``).

Selection rule (DESIGN.md §1): per class, the candidate objects (already filtered by the domain's
rules) are ordered largest first; the first 3m whose photos decode are the class's objects (photos
that fail to decode are skipped, counted and reported); they are dealt 0::3 / 1::3 / 2::3 to
train / valid / test. A class needs at least 3m candidates; a domain may add a rule on the chosen
3m (trafficsign: all of them at least 64 pixels on their shorter side).

Generation: one ``RandomState(seed)``; for class, for instance, for size 64..17, for split, the
window offset is drawn (x, then y) and `recipes.crop_object` cuts the image.
"""
from __future__ import annotations

import dataclasses
import io
import os
import pathlib
import sys
import zipfile
import zlib
from typing import Any, Callable, Iterable, Iterator, Sequence, Union

import numpy as np

from stir_jax import _optional
from stir_jax.data import recipes
from stir_jax.data import stir_file

PathLike = Union[str, os.PathLike]
GenerationError = recipes.GenerationError
DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, zlib.error, zipfile.BadZipFile,
                 KeyError, RuntimeError)


@dataclasses.dataclass(frozen=True)
class Member:
  """A file inside a source folder, either a plain file or a member of a zip archive."""
  archive: pathlib.Path | None  # None: a plain file at `name`.
  name: str  # Path inside the archive, or the plain file's path.

  def __str__(self) -> str:
    return f"{self.archive}:{self.name}" if self.archive else self.name


class SourceTree:
  """Indexes every file under a source folder, looking inside zip archives without extracting.

  Files are found by their last two path components ("annotations/x.json", "images/y.jpg") or by
  name, whatever folder or archive holds them, so both the unpacked and the zipped layouts of a
  dataset work.

  Raises (on construction):
    GenerationError: the folder is missing or empty, or a zip archive is unreadable (truncated).
  """

  def __init__(self, root: PathLike, what: str):
    self.root = pathlib.Path(root)
    if not self.root.exists():
      raise GenerationError(f"--source {self.root} does not exist")
    self.by_tail: dict[str, Member] = {}
    self.files: list[tuple[str, str, Member]] = []  # (parent folder name, file name, member)
    self._zips: dict[pathlib.Path, zipfile.ZipFile] = {}
    files = [self.root] if self.root.is_file() else sorted(
        p for p in self.root.rglob("*") if p.is_file())
    if not files:
      raise GenerationError(f"--source {self.root} is empty (expected {what})")
    for path in files:
      if path.suffix.lower() == ".zip":
        try:
          archive = zipfile.ZipFile(path)
          names = archive.namelist()
        except (zipfile.BadZipFile, OSError, EOFError) as e:
          raise GenerationError(
              f"{path}: not a readable zip archive (truncated or damaged download?): {e}"
          ) from None
        self._zips[path] = archive
        for name in names:
          if not name.endswith("/"):
            self._add(name, Member(path, name))
      else:
        self._add(str(path.relative_to(self.root)) if self.root.is_dir() else path.name,
                  Member(None, str(path)))

  def _add(self, relative: str, member: Member) -> None:
    parts = pathlib.PurePosixPath(relative.replace(os.sep, "/")).parts
    parent = parts[-2] if len(parts) > 1 else ""
    self.files.append((parent, parts[-1], member))
    self.by_tail.setdefault(f"{parent}/{parts[-1]}" if parent else parts[-1], member)
    self.by_tail.setdefault(parts[-1], member)

  def find(self, tail: str) -> Member | None:
    """The file whose last components are ``tail`` ("images/x.jpg" or "x.jpg"), if any."""
    return self.by_tail.get(tail)

  def members(self, folder: str | None = None, suffix: str = "") -> list[tuple[str, Member]]:
    """(file name, member) of the files in folders named ``folder`` (None: any) with ``suffix``."""
    found = {}
    for parent, name, member in self.files:
      if (folder is None or parent == folder) and name.endswith(suffix):
        found.setdefault(name, member)
    return sorted(found.items())

  def read(self, member: Member) -> bytes:
    """The member's bytes (raises one of DECODE_ERRORS when damaged)."""
    if member.archive is None:
      return pathlib.Path(member.name).read_bytes()
    return self._zips[member.archive].read(member.name)

  def open_image(self, member: Member):
    """The member as a fully decoded PIL image (raises one of DECODE_ERRORS when it fails)."""
    Image = _optional.require("PIL.Image", extra="data")

    image = Image.open(io.BytesIO(self.read(member)))
    image.load()
    return image

  def image_header(self, member: Member) -> tuple[int, int, str]:
    """(width, height, PIL mode) from the image's header only."""
    Image = _optional.require("PIL.Image", extra="data")

    if member.archive is None:
      with Image.open(member.name) as image:
        return image.size[0], image.size[1], image.mode
    with self._zips[member.archive].open(member.name) as f:
      with Image.open(io.BytesIO(f.read())) as image:
        return image.size[0], image.size[1], image.mode

  def close(self) -> None:
    for archive in self._zips.values():
      archive.close()


@dataclasses.dataclass(frozen=True)
class Candidate:
  """An object that passed a domain's filters.

  Attributes:
    label: class name.
    image: a key that `load_photo` understands (e.g. the photo's file name).
    box: the object's box in photo pixels.
    size: the sort key: larger first (trafficsign: min side; aerial: max side).
    key: a tie-breaker that makes the order total (e.g. "photo/object id").
  """
  label: str
  image: Any
  box: recipes.Box
  size: float
  key: str


def group_by_class(candidates: Iterable[Candidate]) -> dict[str, list[Candidate]]:
  """Candidates per class, largest first (ties broken by key), classes in name order."""
  groups: dict[str, list[Candidate]] = {}
  for c in candidates:
    groups.setdefault(c.label, []).append(c)
  return {label: sorted(groups[label], key=lambda c: (-c.size, c.key))
          for label in sorted(groups)}


def choose_objects(groups: dict[str, list[Candidate]], instances: int,
                   load_photo: Callable[[Candidate], Any], skipped: recipes.SkipCounter,
                   check_chosen: Callable[[list[Candidate]], str | None] | None = None,
                   exclude: Sequence[str] = (), log: Callable[[str], None] | None = None,
                   ) -> dict[str, list[Candidate]]:
  """Picks each qualifying class's 3m largest decodable objects.

  Args:
    groups: candidates per class, largest first.
    instances: m.
    load_photo: opens a candidate's photo (raising one of DECODE_ERRORS when it cannot).
    skipped: counts photos that failed to decode.
    check_chosen: a domain rule on the chosen 3m; returns why the class is dropped, or None.
    exclude: class names dropped by rule (e.g. "other-sign").
    log: receives one line per class that is dropped.

  Returns:
    class name -> its 3m objects, largest first (the dealing order).

  Raises:
    GenerationError: no class qualifies (the message lists the largest classes and counts), or a
      class that has enough candidates has too few decodable ones (says which and how many).
  """
  need = 3 * instances
  log = log or (lambda line: None)
  chosen: dict[str, list[Candidate]] = {}
  broken: dict[Any, bool] = {}
  short = []
  for label, members in groups.items():
    if label in exclude:
      log(f"class {label!r} dropped by rule ({len(members)} objects)")
      continue
    if len(members) < need:
      continue
    good = []
    for c in members:
      if c.image not in broken:
        try:
          load_photo(c)
          broken[c.image] = False
        except DECODE_ERRORS as e:
          broken[c.image] = True
          skipped.add(str(c.image), f"{type(e).__name__}: {e}")
      if not broken[c.image]:
        good.append(c)
        if len(good) == need:
          break
    if len(good) < need:
      short.append(f"{label!r} has {len(good)} usable objects of the {need} needed")
      continue
    reason = check_chosen(good) if check_chosen else None
    if reason:
      log(f"class {label!r} dropped: {reason}")
      continue
    chosen[label] = good
  if short:
    raise GenerationError(
        f"too few objects after skipping photos that failed to decode: {'; '.join(short)}")
  if not chosen:
    counts = sorted(((len(m), l) for l, m in groups.items() if l not in exclude), reverse=True)
    best = ", ".join(f"{l!r} {n}" for n, l in counts[:5]) or "none"
    raise GenerationError(
        f"no class has {need} suitable objects (= 3 x {instances} instances); the largest "
        f"classes have: {best}")
  return chosen


def generate_crops(chosen: dict[str, list[Candidate]], instances: int,
                   load_photo: Callable[[Candidate], Any], *, keep_aspect: bool, seed: int,
                   metadata: dict[str, str], progress: bool = True,
                   desc: str = "crops") -> stir_file.StirData:
  """Cuts every chosen object at all 48 sizes.

  Args:
    chosen: class name -> 3m candidates, largest first (see `choose_objects`).
    instances: m.
    load_photo: returns a candidate's photo as a PIL image.
    keep_aspect: see `recipes.crop_object`.
    seed: the RandomState seed of the window offsets.
    metadata: the file's metadata.
    progress: tqdm bar on stderr.
    desc: the bar's label.

  Returns:
    StirData with imgs (3, 48, n, m, 64, 64, 3) uint8 (RGB) or (3, 48, n, m, 64, 64) for grey photos.
  """
  tqdm = _optional.require("tqdm", extra="data").tqdm

  names = list(chosen)
  first = load_photo(chosen[names[0]][0])
  channels = 1 if first.mode == "L" else 3
  out = recipes.empty_arrays(len(names), instances, channels)
  rng = np.random.RandomState(seed)
  with tqdm(total=len(names) * instances, desc=desc, unit="object", disable=not progress) as bar:
    for label, name in enumerate(names):
      splits = [chosen[name][k::3] for k in range(stir_file.NUM_SPLITS)]
      for i in range(instances):
        photos = [load_photo(splits[k][i]) for k in range(stir_file.NUM_SPLITS)]
        photos = [p.convert("L" if channels == 1 else "RGB") for p in photos]
        for index in range(stir_file.NUM_SCALES):
          s = stir_file.scale_of_index(index)
          for k in range(stir_file.NUM_SPLITS):
            window, position = recipes.crop_object(photos[k], splits[k][i].box, s, rng,
                                                   keep_aspect=keep_aspect)
            out["imgs"][k, index, label, i] = window[..., 0] if channels == 1 else window
            out["psts"][k, index, label, i] = position
        bar.update(1)
  return recipes.as_stir(out, metadata, names)


def stderr_log(line: str) -> None:
  """Writes an informational line to stderr."""
  sys.stderr.write(f"note: {line}\n")


def photo_cache(open_fn: Callable[[Any], Any], size: int = 4) -> Callable[[Any], Any]:
  """Wraps ``open_fn(key)`` with a small LRU cache (photos are large; a few are reused)."""
  import functools  # pylint: disable=g-import-not-at-top
  return functools.lru_cache(maxsize=size)(open_fn)


def iter_lines(data: bytes) -> Iterator[str]:
  """Decoded text lines (UTF-8 with Latin-1 fallback)."""
  try:
    text = data.decode("utf-8")
  except UnicodeDecodeError:
    text = data.decode("latin-1")
  return iter(text.splitlines())
