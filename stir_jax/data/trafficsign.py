"""The STIR trafficsign domain from the Mapillary Traffic Sign Dataset (MTSD) v2.

Source layout (``--source`` folder; zipped or unpacked, any nesting - see `crops.SourceTree`):

  mtsd_v2_fully_annotated/annotations/<key>.json   one per photo (MTSD v2 JSON)
  mtsd_v2_fully_annotated/splits/train.txt, val.txt   photo keys of the two annotated splits
  train.0.zip, train.1.zip, train.2.zip, val.zip     each holding images/<key>.jpg

Rules (DESIGN.md §1, after the published generator): photos of the train and val lists (every
annotation file when no split list exists); objects with any property flag set (occluded,
ambiguous, dummy, out-of-frame, ...) are skipped; the box is rounded outwards to whole pixels;
near-square objects only (abs(w - h) < 5); classes with at least 75 (= 3m) such objects, except
"other-sign"; the 75 largest by min(w, h) must all be at least 64 pixels on their shorter side
(else the class is dropped); they are dealt 0::3 / 1::3 / 2::3 to train / valid / test. Each sign
is scaled to s x s (width and height separately) and cut by `recipes.crop_object`.

MTSD is CC BY-NC-SA 4.0 and needs registration, so the tests build small archives in this layout.
"""
from __future__ import annotations

import json
import math
import os
from typing import Union

from stir_jax.data import crops
from stir_jax.data import recipes
from stir_jax.data import stir_file

PathLike = Union[str, os.PathLike]
DEFAULT_INSTANCES = 25
MIN_SIDE = 64
SQUARE_TOLERANCE = 5
EXCLUDED = ("other-sign",)
LICENSE = ("CC BY-NC-SA 4.0, modified from the Mapillary Traffic Sign Dataset - "
           "https://www.mapillary.com/dataset/trafficsign")


def read_candidates(tree: crops.SourceTree, skipped: recipes.SkipCounter,
                    log=crops.stderr_log) -> list[crops.Candidate]:
  """All near-square, unflagged sign boxes of the train and val photos."""
  keys = []
  for split in ("train", "val"):
    member = tree.find(f"splits/{split}.txt")
    if member is not None:
      keys += [line.strip() for line in crops.iter_lines(tree.read(member)) if line.strip()]
  annotations = {name[:-5]: m for name, m in tree.members("annotations", ".json")}
  if not annotations:
    raise recipes.GenerationError(
        f"{tree.root}: no annotations/<key>.json files (expected the MTSD v2 layout: "
        "mtsd_v2_fully_annotated/annotations, splits, and zips with images/<key>.jpg)")
  if not keys:
    log("no splits/train.txt or splits/val.txt: using every annotation file")
    keys = sorted(annotations)
  candidates = []
  for key in keys:
    member = annotations.get(key)
    if member is None:
      skipped.add(f"annotations/{key}.json", "listed in a split but missing")
      continue
    try:
      objects = json.loads(tree.read(member))["objects"]
    except (*crops.DECODE_ERRORS, TypeError) as e:
      skipped.add(str(member), f"{type(e).__name__}: {e}")
      continue
    for obj in objects:
      try:
        if any((obj.get("properties") or {}).values()):
          continue
        bbox = obj["bbox"]
        box = recipes.Box(math.floor(bbox["xmin"]), math.floor(bbox["ymin"]),
                          math.ceil(bbox["xmax"]), math.ceil(bbox["ymax"]))
        label = str(obj["label"])
        object_key = str(obj.get("key", len(candidates)))
      except (KeyError, TypeError, ValueError) as e:
        skipped.add(str(member), f"bad object: {type(e).__name__}: {e}")
        continue
      if box.width <= 0 or box.height <= 0:
        continue
      if abs(box.width - box.height) >= SQUARE_TOLERANCE:
        continue
      candidates.append(crops.Candidate(label=label, image=key, box=box,
                                        size=min(box.width, box.height),
                                        key=f"{key}/{object_key}"))
  return candidates


def generate_trafficsign(source: PathLike, *, instances: int = DEFAULT_INSTANCES, seed: int = 42,
                         progress: bool = True, log=crops.stderr_log
                         ) -> tuple[stir_file.StirData, recipes.SkipCounter]:
  """Generates STIR trafficsign from an MTSD v2 folder.

  Returns:
    The dataset (imgs (3, 48, n, m, 64, 64, 3)) and the count of photos skipped as undecodable.

  Raises:
    GenerationError: missing/empty source, unreadable archive, no qualifying class, or a class
      left with too few decodable photos.
  """
  tree = crops.SourceTree(source, "the Mapillary Traffic Sign Dataset v2 layout")
  skipped = recipes.SkipCounter("photo(s) or annotation(s) failed to decode and were skipped")
  try:
    groups = crops.group_by_class(read_candidates(tree, skipped, log))

    def open_photo(key):
      member = tree.find(f"images/{key}.jpg")
      if member is None:
        raise KeyError(f"images/{key}.jpg is in no archive")
      return tree.open_image(member)

    open_photo = crops.photo_cache(open_photo)
    load = lambda c: open_photo(c.image)

    def check(chosen):
      small = [c for c in chosen if c.size < MIN_SIDE]
      if small:
        return (f"{len(small)} of its {len(chosen)} largest signs are under {MIN_SIDE} pixels "
                f"(smallest {min(c.size for c in chosen):g})")
      return None

    chosen = crops.choose_objects(groups, instances, load, skipped, check_chosen=check,
                                  exclude=EXCLUDED, log=log)
    metadata = recipes.make_metadata(
        "Scaled and Translated Image Recognition (STIR) Traffic Sign",
        f"{len(chosen)} traffic sign classes, {instances} signs per class and split, cropped at "
        "sizes between 17x17 and 64x64 pixels at a random position inside the 64x64 window "
        f"(numpy RandomState seed {seed}). Full colour recorded by camera. Regenerated by "
        "stir_jax following the STIR trafficsign recipe.", LICENSE)
    data = crops.generate_crops(chosen, instances, load, keep_aspect=False, seed=seed,
                                metadata=metadata, progress=progress, desc="trafficsign")
  finally:
    tree.close()
  return data, skipped
