"""Tests of the STIR file format: round trips, atomic saves, and rejected files (API and CLI)."""
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from stir_jax.data import stir_file
from tests.data.conftest import synthetic
from tests.data.conftest import take_classes

REPO = pathlib.Path(__file__).resolve().parents[2]


def run_cli(*args: str) -> subprocess.CompletedProcess:
  env = dict(os.environ, PYTHONPATH=str(REPO))
  return subprocess.run([sys.executable, "-m", "stir_jax.data", *map(str, args)],
                        capture_output=True, text=True, cwd=REPO, env=env, timeout=120)


def assert_one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
  assert result.returncode == 2, result
  lines = result.stderr.strip().splitlines()
  assert len(lines) == 1, result.stderr
  assert lines[0].startswith("error: ")
  assert "Traceback" not in result.stderr + result.stdout
  for fragment in fragments:
    assert fragment in lines[0], lines[0]


def write_npz(path: pathlib.Path, **overrides) -> pathlib.Path:
  """A 2-class synthetic STIR file with some arrays replaced (None deletes a key)."""
  data = synthetic(2)
  arrays = dict(imgs=data.imgs, lbls=data.lbls, scls=data.scls, psts=data.psts,
                metadata=np.array([[k, v] for k, v in data.metadata.items()]),
                lbldata=np.array(data.lbldata))
  arrays.update(overrides)
  np.savez_compressed(path, **{k: v for k, v in arrays.items() if v is not None})
  return path


def test_round_trip(emoji3, tmp_path):
  path = stir_file.save_stir(tmp_path / "e.npz", emoji3)
  loaded = stir_file.load_stir(path)
  for key in ("imgs", "lbls", "scls", "psts"):
    np.testing.assert_array_equal(getattr(loaded, key), getattr(emoji3, key))
  assert loaded.metadata == emoji3.metadata and loaded.lbldata == emoji3.lbldata
  with np.load(path, allow_pickle=False) as f:  # Strings are stored without pickling.
    assert f["metadata"].shape == (6, 2) and f["metadata"].dtype.kind == "U"
  summary = stir_file.summarize(loaded)
  assert "(3, 48, 3, 1, 64, 64) uint8" in summary and "train 144" in summary
  assert len(summary.splitlines()) > 5


def test_published_layouts_load(tmp_path):
  """Files without the instance axis and with bytes strings (older numpy writers) load."""
  data = synthetic(2)
  path = write_npz(tmp_path / "legacy.npz", imgs=data.imgs[:, :, :, 0], lbls=data.lbls[..., 0],
                   scls=data.scls[..., 0].astype(np.int64), psts=data.psts[:, :, :, 0],
                   metadata=np.array([[k.encode(), b"v"] for k in stir_file.METADATA_KEYS]),
                   lbldata=np.array([b"a", b"b"]))
  loaded = stir_file.load_stir(path)
  assert loaded.imgs.shape == (3, 48, 2, 1, 64, 64)
  assert loaded.lbldata == ["a", "b"] and loaded.metadata["title"] == "v"
  np.testing.assert_array_equal(loaded.psts[:, :, :, 0], data.psts[:, :, :, 0])


def test_colour_layout(tmp_path):
  data = synthetic(2, num_instances=2, channels=3)
  loaded = stir_file.load_stir(stir_file.save_stir(tmp_path / "c.npz", data))
  assert loaded.imgs.shape == (3, 48, 2, 2, 64, 64, 3)
  assert (loaded.num_channels, loaded.num_instances) == (3, 2)


def test_images_of_a_split_always_have_a_channel_axis():
  grey, colour = synthetic(2, num_instances=2), synthetic(2, num_instances=2, channels=3)
  assert grey.images(2).shape == (48, 2, 2, 64, 64, 1)
  np.testing.assert_array_equal(grey.images(1)[..., 0], grey.imgs[1])
  assert colour.images(0).shape == (48, 2, 2, 64, 64, 3)
  np.testing.assert_array_equal(colour.images(0), colour.imgs[0])


def test_save_is_atomic(emoji3, tmp_path, monkeypatch):
  path = stir_file.save_stir(tmp_path / "e.npz", take_classes(emoji3, 1))
  before = path.read_bytes()

  def broken_savez(file, **arrays):
    file.write(b"half a file")
    raise OSError("disk full")

  monkeypatch.setattr(np, "savez_compressed", broken_savez)
  with pytest.raises(OSError, match="disk full"):
    stir_file.save_stir(path, emoji3)
  assert path.read_bytes() == before
  assert sorted(p.name for p in tmp_path.iterdir()) == ["e.npz"]  # No temp file left.


def test_save_refuses_invalid_data(tmp_path):
  data = synthetic(2)
  data.lbls[0, 0, 0, 0] = 5
  with pytest.raises(stir_file.StirFileError, match="class range"):
    stir_file.save_stir(tmp_path / "bad.npz", data)
  assert not (tmp_path / "bad.npz").exists()


def _bad_files(tmp_path: pathlib.Path) -> dict[str, tuple[pathlib.Path, str]]:
  """name -> (file, a fragment its error message must contain)."""
  good = write_npz(tmp_path / "good.npz")
  truncated = tmp_path / "truncated.npz"
  truncated.write_bytes(good.read_bytes()[:good.stat().st_size // 2])
  data = synthetic(2)
  scls = data.scls.copy()
  scls[1, 3, 0, 0] = 60
  psts = data.psts.copy()
  psts[2, 0, 1, 0] = (1, 0)  # s = 64 at x = 1: x + s > 64.
  lbls = data.lbls.copy()
  lbls[0, 7, 1, 0] = 2
  not_zip = tmp_path / "text.npz"
  not_zip.write_text("hello\n")
  return {
      "missing": (tmp_path / "nope.npz", "file not found"),
      "truncated": (truncated, "truncated"),
      "not_zip": (not_zip, "cannot read"),
      "missing_key": (write_npz(tmp_path / "nokey.npz", scls=None), "missing key(s) scls"),
      "wrong_dtype": (write_npz(tmp_path / "dtype.npz", imgs=data.imgs.astype(np.float32)),
                      "dtype float32"),
      "wrong_shape": (write_npz(tmp_path / "shape.npz", imgs=data.imgs[:, :47]), "shape"),
      "bad_scale": (write_npz(tmp_path / "scale.npz", scls=scls), "64 - scale index"),
      "bad_label": (write_npz(tmp_path / "label.npz", lbls=lbls), "class range 0..1"),
      "position_out_of_range": (write_npz(tmp_path / "pos.npz", psts=psts), "outside"),
  }


def test_load_rejects_bad_files(tmp_path):
  for name, (path, fragment) in _bad_files(tmp_path).items():
    with pytest.raises(stir_file.StirFileError) as info:
      stir_file.load_stir(path)
    message = str(info.value)
    assert "\n" not in message and message.startswith(str(path)), name
    assert fragment in message, (name, message)
  stir_file.load_stir(tmp_path / "pos.npz", validate=False)  # Structure alone is fine.


@pytest.mark.parametrize("name", ["missing", "truncated", "missing_key", "wrong_dtype",
                                  "position_out_of_range"])
def test_cli_check_rejects(tmp_path, name):
  path, fragment = _bad_files(tmp_path)[name]
  result = run_cli("check", path)
  assert_one_line_error(result, str(path), fragment)
  assert result.stdout == ""


def test_cli_check_accepts(emoji2_path):
  result = run_cli("check", emoji2_path)
  assert result.returncode == 0, result.stderr
  assert "imgs: (3, 48, 2, 1, 64, 64) uint8" in result.stdout


def test_cli_generate_refuses_to_overwrite(tmp_path):
  out = tmp_path / "emoji.npz"
  out.write_bytes(b"precious")
  assert_one_line_error(run_cli("generate", "--domain", "emoji", "--out", out, "--icons", "1"),
                        "already exists", "--force")
  assert out.read_bytes() == b"precious"


def test_cli_generate_domains(tmp_path):
  assert_one_line_error(run_cli("generate", "--domain", "trafficsign", "--out",
                                tmp_path / "t.npz"), "needs --source")
  assert_one_line_error(run_cli("generate", "--domain", "faces", "--out", tmp_path / "f.npz"),
                        "unknown --domain 'faces'", "tfds:NAME")
  assert_one_line_error(run_cli("generate", "--domain", "tfds:", "--out", tmp_path / "f.npz"),
                        "names no TFDS dataset")
  assert_one_line_error(run_cli("generate", "--domain", "emoji"), "--out")
  assert not list(tmp_path.iterdir())


def test_cli_generate_and_show(emoji3, tmp_path):
  out = tmp_path / "sub" / "emoji1.npz"
  result = run_cli("generate", "--domain", "emoji", "--out", out, "--icons", "1", "--quiet")
  assert result.returncode == 0, result.stderr
  loaded = stir_file.load_stir(out)
  np.testing.assert_array_equal(loaded.imgs, emoji3.imgs[:, :, :1])
  result = run_cli("show", out, "--out", tmp_path / "grid.png")
  assert result.returncode == 0, result.stderr
  with open(tmp_path / "grid.png", "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"
  assert_one_line_error(run_cli("show", out, "--out", tmp_path / "g.png", "--scales", "12"),
                        "17..64")
