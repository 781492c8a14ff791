"""The STIR aerial domain from DOTA v1.5 (Dataset for Object deTection in Aerial images).

Source layout (``--source`` folder; zipped or unpacked - see `crops.SourceTree`):

  train/DOTA-v1.5_train.zip, val/DOTA-v1.5_val.zip   labelTxt files <name>.txt (or labelTxt/<name>.txt)
  train/part1.zip, part2.zip, part3.zip, val/part1.zip   images/<name>.png

A labelTxt file has optional header lines ``imagesource:GoogleEarth`` and ``gsd:...``, then one
object per line: ``x1 y1 x2 y2 x3 y3 x4 y4 category difficult``.

Rules (DESIGN.md §1, after the published generator): GoogleEarth photos in RGB; axis-aligned
objects (the first edge within 3 degrees of the x axis); the enclosing box inside the photo, its
longer side at least 64 pixels and under a quarter of the photo's width and of its height; classes
with at least 75 (= 3m) such objects; the 75 largest by max(w, h) dealt 0::3 / 1::3 / 2::3. Each
photo is scaled by s / max(w, h) (aspect kept) and cut by `recipes.crop_object`. Unlike the
published file, the whole s x s box anchored at the object's top-left stays inside the window, so
positions always satisfy x + s <= 64 and y + s <= 64.

DOTA is for academic use only and needs registration, so the tests build small archives in this
layout.
"""
from __future__ import annotations

import math
import os
from typing import Union

from stir_jax.data import crops
from stir_jax.data import recipes
from stir_jax.data import stir_file

PathLike = Union[str, os.PathLike]
DEFAULT_INSTANCES = 25
MIN_SIDE = 64
MAX_ANGLE = 3.0
LICENSE = ("Academic use only (DOTA terms), modified from DOTA v1.5 - "
           "https://captain-whu.github.io/DOTA/dataset.html")


def parse_label_file(data: bytes) -> tuple[str | None, list[tuple[list[float], str]]]:
  """(image source or None, [(8 corner coordinates, category)]) of one labelTxt file."""
  source = None
  objects = []
  for line in crops.iter_lines(data):
    line = line.strip()
    if not line:
      continue
    if line.startswith("imagesource:"):
      source = line.split(":", 1)[1].strip()
      continue
    parts = line.split()
    if len(parts) < 9 or ":" in line:
      continue
    objects.append(([float(v) for v in parts[:8]], parts[8]))
  return source, objects


def read_candidates(tree: crops.SourceTree, skipped: recipes.SkipCounter
                    ) -> list[crops.Candidate]:
  """All objects of GoogleEarth RGB photos that pass the aerial rules."""
  labels = [(name, m) for name, m in tree.members(None, ".txt")
            if tree.find(f"images/{name[:-4]}.png") is not None]
  if not labels:
    raise recipes.GenerationError(
        f"{tree.root}: no labelTxt files with matching images/<name>.png (expected the DOTA v1.5 "
        "layout: DOTA-v1.5_train.zip / _val.zip and part*.zip with images)")
  candidates = []
  for name, member in labels:
    stem = name[:-4]
    try:
      source, objects = parse_label_file(tree.read(member))
    except (*crops.DECODE_ERRORS, IndexError) as e:
      skipped.add(str(member), f"{type(e).__name__}: {e}")
      continue
    if source != "GoogleEarth" or not objects:
      continue
    boxes = []
    for corners, label in objects:
      xs, ys = corners[0::2], corners[1::2]
      angle = abs(math.degrees(math.atan2(ys[1] - ys[0], xs[1] - xs[0])))
      box = recipes.Box(min(xs), min(ys), max(xs), max(ys))
      if angle < MAX_ANGLE and max(box.width, box.height) >= MIN_SIDE:
        boxes.append((box, label))
    if not boxes:
      continue
    image = tree.find(f"images/{stem}.png")
    try:
      width, height, mode = tree.image_header(image)
    except crops.DECODE_ERRORS as e:
      skipped.add(str(image), f"{type(e).__name__}: {e}")
      continue
    if mode != "RGB":
      continue
    for index, (box, label) in enumerate(boxes):
      side = max(box.width, box.height)
      if (box.xmin >= 0 and box.ymin >= 0 and box.xmax <= width and box.ymax <= height
          and width / side > 4 and height / side > 4):
        candidates.append(crops.Candidate(label=label, image=stem, box=box, size=side,
                                          key=f"{stem}/{index:05d}"))
  return candidates


def generate_aerial(source: PathLike, *, instances: int = DEFAULT_INSTANCES, seed: int = 42,
                    progress: bool = True, log=crops.stderr_log
                    ) -> tuple[stir_file.StirData, recipes.SkipCounter]:
  """Generates STIR aerial from a DOTA v1.5 folder.

  Returns:
    The dataset (imgs (3, 48, n, m, 64, 64, 3)) and the count of photos skipped as undecodable.

  Raises:
    GenerationError: missing/empty source, unreadable archive, no qualifying class, or a class
      left with too few decodable photos.
  """
  tree = crops.SourceTree(source, "the DOTA v1.5 layout")
  skipped = recipes.SkipCounter("photo(s) or label file(s) failed to decode and were skipped")
  try:
    groups = crops.group_by_class(read_candidates(tree, skipped))
    open_photo = crops.photo_cache(lambda stem: tree.open_image(tree.find(f"images/{stem}.png")))
    load = lambda c: open_photo(c.image)
    chosen = crops.choose_objects(groups, instances, load, skipped, log=log)
    metadata = recipes.make_metadata(
        "Scaled and Translated Image Recognition (STIR) Aerial Object",
        f"{len(chosen)} aerial object classes, {instances} objects per class and split, cropped "
        "at sizes between 17x17 and 64x64 pixels (longer side) at a random position inside the "
        f"64x64 window (numpy RandomState seed {seed}). Full colour. Regenerated by stir_jax "
        "following the STIR aerial recipe.", LICENSE)
    data = crops.generate_crops(chosen, instances, load, keep_aspect=True, seed=seed,
                                metadata=metadata, progress=progress, desc="aerial")
  finally:
    tree.close()
  return data, skipped
