"""Tests of the crop recipe and the trafficsign (Mapillary) and aerial (DOTA) generators.

The real sources need registration, so small archives in their real formats are built here:
MTSD v2 JSON annotations with split lists and zipped JPEGs; DOTA labelTxt files in a zip with the
PNG photos in another.
"""
import io
import json
import pathlib
import zipfile

import numpy as np
import pytest
from PIL import Image

from stir_jax.data import aerial
from stir_jax.data import recipes
from stir_jax.data import stir_file
from stir_jax.data import trafficsign
from tests.data.test_stir_file import assert_one_line_error
from tests.data.test_stir_file import run_cli

COLOURS = {"information--parking--g1": (30, 60, 220), "regulatory--stop--g1": (220, 30, 30),
           "warning--curve--g1": (230, 200, 20), "other-sign": (20, 200, 20),
           "complementary--x--g1": (200, 20, 200), "plane": (230, 230, 230),
           "ship": (20, 20, 230), "storage-tank": (220, 120, 20)}
BACKGROUND = (90, 110, 100)


def _photo(width, height, box, colour, seed):
  """A photo with a plain object (a coloured box with a dark centre mark) on a noisy background."""
  rng = np.random.RandomState(seed)
  pixels = np.clip(np.array(BACKGROUND) + rng.randint(-8, 9, (height, width, 3)), 0, 255)
  x0, y0, x1, y1 = box
  pixels[y0:y1, x0:x1] = colour
  return Image.fromarray(pixels.astype(np.uint8))


def _encode(image, fmt):
  buffer = io.BytesIO()
  image.save(buffer, format=fmt, **({"quality": 95} if fmt == "JPEG" else {}))
  return buffer.getvalue()


def make_mapillary(root: pathlib.Path) -> pathlib.Path:
  """An MTSD v2 folder (classes described in the comments) with one sign per photo."""
  signs = {  # label: sign sides (square unless a pair)
      "regulatory--stop--g1": [100, 95, 90, 86, 80, 75, 70],  # qualifies (7 >= 6)
      "information--parking--g1": [80, 78, 76, 72, 70, 66],  # qualifies
      "warning--curve--g1": [90, 85, 80, 75, 70, 60],  # 6 but the 6th < 64: dropped by rule
      "other-sign": [90, 90, 90, 90, 90, 90],  # excluded by name
      "complementary--x--g1": [90, 90],  # too few
  }
  annotations = root / "mtsd_v2_fully_annotated" / "annotations"
  annotations.mkdir(parents=True)
  keys = []
  archive = zipfile.ZipFile(root / "train.0.zip", "w")
  seed = 0

  def add(key, label, side, flags=None, height=None, corrupt=False):
    nonlocal seed
    seed += 1
    width, tall = side + 70, (height or side) + 50
    box = (40, 20, 40 + side, 20 + (height or side))
    obj = {"key": f"o{seed}", "label": label,
           "bbox": {"xmin": box[0] + 0.3, "ymin": box[1] + 0.2, "xmax": box[2] - 0.4,
                    "ymax": box[3] - 0.1},
           "properties": {"occluded": False, "ambiguous": False, "dummy": False, **(flags or {})}}
    (annotations / f"{key}.json").write_text(json.dumps(
        {"width": width, "height": tall, "ispano": False, "objects": [obj]}))
    data = _encode(_photo(width, tall, box, COLOURS[label], seed), "JPEG")
    archive.writestr(f"images/{key}.jpg", data[:200] if corrupt else data)
    keys.append(key)

  for label, sides in signs.items():
    for i, side in enumerate(sides):
      add(f"{label[:4]}{i:02d}", label, side)
  add("brokenjpg", "regulatory--stop--g1", 120, corrupt=True)  # Largest: chosen, then skipped.
  add("occluded", "information--parking--g1", 130, flags={"occluded": True})
  add("oblong", "information--parking--g1", 120, height=100)  # Not near-square.
  archive.close()
  splits = root / "mtsd_v2_fully_annotated" / "splits"
  splits.mkdir()
  (splits / "train.txt").write_text("\n".join(keys[::2]) + "\n")
  (splits / "val.txt").write_text("\n".join(keys[1::2]) + "\n")
  return root


def make_dota(root: pathlib.Path) -> pathlib.Path:
  """A DOTA v1.5 folder: labelTxt zip and image zip, one or two objects per 300 x 300 photo."""
  (root / "train").mkdir(parents=True)
  labels = zipfile.ZipFile(root / "train" / "DOTA-v1.5_train.zip", "w")
  images = zipfile.ZipFile(root / "train" / "part1.zip", "w")
  count = 0

  def add(objects, source="GoogleEarth", mode="RGB"):
    nonlocal count
    count += 1
    name = f"P{count:04d}"
    rng = np.random.RandomState(count)
    pixels = np.clip(np.array(BACKGROUND) + rng.randint(-8, 9, (300, 300, 3)), 0, 255)
    lines = [f"imagesource:{source}", "gsd:0.5"]
    for label, (x0, y0, w, h), rotated in objects:
      pixels[y0:y0 + h, x0:x0 + w] = COLOURS[label]
      corners = [(x0, y0), (x0 + w, y0), (x0 + w, y0 + h), (x0, y0 + h)]
      if rotated:
        corners = [(x0 + 5, y0), (x0 + w, y0 + 12), (x0 + w - 5, y0 + h), (x0, y0 + h - 12)]
      lines.append(" ".join(f"{x}.0 {y}.0" for x, y in corners) + f" {label} 0")
    image = Image.fromarray(pixels.astype(np.uint8))
    images.writestr(f"images/{name}.png", _encode(image.convert(mode), "PNG"))
    labels.writestr(f"{name}.txt", "\n".join(lines) + "\n")

  for i in range(6):
    add([("plane", (50 + 10 * i, 60, 64 + i, 40 + i), False)])  # 6 wide planes
  add([("plane", (20, 20, 64, 64), False), ("ship", (150, 150, 66, 66), False)])  # two objects
  for i in range(4):
    add([("ship", (100, 100, 64 + i, 70), False)])  # 5 good ships, with the one above
  add([("ship", (100, 100, 90, 90), True)])  # rotated: not a candidate
  add([("ship", (100, 100, 90, 90), False)], mode="L")  # grey photo: not a candidate
  for i in range(6):
    add([("storage-tank", (100, 100, 70, 70), False)], source="GF2")  # not GoogleEarth
  add([("plane", (10, 10, 200, 80), False)])  # more than a quarter of the photo
  labels.close()
  images.close()
  return root


@pytest.fixture(scope="module")
def mapillary(tmp_path_factory):
  return make_mapillary(tmp_path_factory.mktemp("mapillary"))


@pytest.fixture(scope="module")
def dota(tmp_path_factory):
  return make_dota(tmp_path_factory.mktemp("dota"))


@pytest.mark.parametrize("keep_aspect", [False, True])
def test_crop_matches_full_resize_then_crop(keep_aspect):
  photo = Image.fromarray(np.random.RandomState(0).randint(0, 256, (230, 310, 3), np.uint8))
  box = recipes.Box(101, 57, 181, 131)
  for s in (64, 50, 33, 17):
    rng = np.random.RandomState(s)
    window, (x, y) = recipes.crop_object(photo, box, s, rng, keep_aspect=keep_aspect)
    fx = s / max(box.width, box.height) if keep_aspect else s / box.width
    fy = s / max(box.width, box.height) if keep_aspect else s / box.height
    size = (round(310 * fx), round(230 * fy))
    full = np.asarray(photo.resize(size, Image.Resampling.LANCZOS))
    xstart, ystart = round(box.xmin * size[0] / 310), round(box.ymin * size[1] / 230)
    x0, y0 = xstart - x + 64, ystart - y + 64  # Window origin in the zero-padded full resize.
    full = np.pad(full, ((64, 64), (64, 64), (0, 0)))
    diff = np.abs(window.astype(int) - full[y0:y0 + 64, x0:x0 + 64])
    assert diff.max() <= 1 and (diff > 0).mean() < 0.005  # Filter-weight rounding only.
    assert 0 <= x <= 64 - s and 0 <= y <= 64 - s


def test_small_photo_is_zero_padded():
  photo = _photo(70, 66, (3, 1, 67, 65), (250, 250, 250), 0)  # sign 64 x 64 in a 70 x 66 photo
  for s in (64, 40, 17):
    window, (x, y) = recipes.crop_object(photo, recipes.Box(3, 1, 67, 65), s,
                                         np.random.RandomState(s), keep_aspect=False)
    assert 0 <= x <= 64 - s and 0 <= y <= 64 - s
    inner = window[y + 2:y + s - 2, x + 2:x + s - 2]
    assert inner.min() > 200  # The sign is where the position says.
    if s < 60:  # The photo shrank below 64: the rest of the window is black.
      assert (window.sum(-1) == 0).mean() > 0.2


def _check_objects(data, colours, tolerance=40):
  """Every image shows its class's colour at the centre of its recorded box."""
  for index in (0, 16, 47):
    s = 64 - index
    for split in range(3):
      for label, name in enumerate(data.lbldata):
        for j in range(data.num_instances):
          x, y = data.psts[split, index, label, j]
          centre = data.imgs[split, index, label, j, y + s // 2, x + s // 2].astype(int)
          assert np.abs(centre - colours[name]).max() < tolerance, (split, index, name, j)


def test_trafficsign_generator(mapillary):
  data, skipped = trafficsign.generate_trafficsign(mapillary, instances=2, seed=1, progress=False,
                                                   log=lambda line: None)
  assert data.lbldata == ["information--parking--g1", "regulatory--stop--g1"]
  assert data.imgs.shape == (3, 48, 2, 2, 64, 64, 3)
  assert skipped.count == 1 and "brokenjpg" in skipped.report()
  stir_file.check_values(data)
  assert "CC BY-NC-SA" in data.metadata["license"] and "Traffic Sign" in data.metadata["title"]
  _check_objects(data, COLOURS)
  again, _ = trafficsign.generate_trafficsign(mapillary, instances=2, seed=1, progress=False,
                                              log=lambda line: None)
  np.testing.assert_array_equal(again.imgs, data.imgs)
  np.testing.assert_array_equal(again.psts, data.psts)


def test_trafficsign_too_few_objects(mapillary):
  with pytest.raises(recipes.GenerationError, match=r"no class has 9 suitable objects.*'other-sign"
                     r"' 6|'regulatory--stop--g1' 8"):
    trafficsign.generate_trafficsign(mapillary, instances=3, progress=False,
                                     log=lambda line: None)


def test_aerial_generator(dota):
  data, skipped = aerial.generate_aerial(dota, instances=2, seed=0, progress=False,
                                         log=lambda line: None)
  assert data.lbldata == ["plane"]  # ship: 5 usable; storage-tank: not GoogleEarth.
  assert skipped.count == 0
  assert data.imgs.shape == (3, 48, 1, 2, 64, 64, 3)
  stir_file.check_values(data)  # The s x s box always lies inside the window.
  _check_objects(data, COLOURS)
  # Aspect is kept: a wide plane spans s columns but fewer rows.
  image = data.imgs[0, 0, 0, 0]  # s = 64
  x, y = data.psts[0, 0, 0, 0]
  plane = np.abs(image.astype(int) - COLOURS["plane"]).max(-1) < 30
  rows, cols = np.nonzero(plane)
  assert np.ptp(cols) + 1 >= 60 and np.ptp(rows) + 1 < 50


def test_aerial_class_with_too_few_objects(dota):
  with pytest.raises(recipes.GenerationError, match=r"'plane' 7.*'ship' 5"):
    aerial.generate_aerial(dota, instances=3, progress=False, log=lambda line: None)


def test_cli_trafficsign_and_bad_archives(mapillary, tmp_path):
  out = tmp_path / "ts.npz"
  result = run_cli("generate", "--domain", "trafficsign", "--source", mapillary, "--out", out,
                   "--instances", "2", "--quiet")
  assert result.returncode == 0, result.stderr
  assert "1 photo(s) or annotation(s) failed to decode" in result.stderr
  assert "skipped undecodable inputs: 1" in result.stdout
  assert "Traceback" not in result.stderr
  assert stir_file.load_stir(out).num_classes == 2
  result = run_cli("show", out, "--out", tmp_path / "ts.png", "--scales", "64,17")
  assert result.returncode == 0, result.stderr
  with Image.open(tmp_path / "ts.png") as grid:
    assert grid.mode in ("RGB", "RGBA") and grid.size[0] > 200
  broken = tmp_path / "broken"
  broken.mkdir()
  data = (mapillary / "train.0.zip").read_bytes()
  (broken / "train.0.zip").write_bytes(data[:len(data) // 3])
  assert_one_line_error(run_cli("generate", "--domain", "aerial", "--source", broken,
                                "--out", tmp_path / "a.npz"), "train.0.zip",
                        "not a readable zip archive")
  assert_one_line_error(run_cli("generate", "--domain", "aerial", "--source", mapillary,
                                "--out", tmp_path / "a.npz"), "no labelTxt files")
  assert_one_line_error(run_cli("generate", "--domain", "trafficsign", "--source", mapillary,
                                "--out", tmp_path / "b.npz", "--instances", "4"),
                        "no class has 12 suitable objects")
