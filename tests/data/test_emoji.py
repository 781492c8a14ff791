"""Tests of the emoji generator: layout, seeding order, placement and rendering."""
import numpy as np
import pytest

from stir_jax.data import emoji
from stir_jax.data import stir_file


def test_names_are_the_36_faces_in_label_order():
  assert len(emoji.EMOJI_NAMES) == len(set(emoji.EMOJI_NAMES)) == 36
  assert emoji.EMOJI_NAMES[:3] == ("tired", "surprise", "smile-wink")
  assert emoji.EMOJI_NAMES[-3:] == ("smile", "meh", "frown")
  svg_dir = emoji.fontawesome_svg_dir()
  assert svg_dir.parts[-2:] == ("svgs", "regular")
  assert all((svg_dir / f"{name}.svg").is_file() for name in emoji.EMOJI_NAMES)


def test_unknown_icon_is_a_clear_error():
  with pytest.raises(emoji.FontAwesomeNotFoundError, match="no-such-face"):
    emoji.render_icon("no-such-face", 20)


@pytest.mark.parametrize("size", [17, 32, 33, 64])
def test_render_fills_its_canvas(size):
  icon = emoji.render_icon("smile", size)
  assert icon.shape == (size, size) and icon.dtype == np.uint8
  assert icon.max() == 255 and icon.min() == 0
  rows, cols = np.nonzero(icon)
  # The face circle spans 496 of the 512-unit viewBox: ink covers s - 2 .. s pixels.
  assert size - 2 <= np.ptp(rows) + 1 <= size
  assert size - 2 <= np.ptp(cols) + 1 <= size


def test_wide_icon_fills_the_width():
  icon = emoji.render_icon("grin-tears", 64)  # viewBox 640 x 512: fitted by its width.
  rows, cols = np.nonzero(icon)
  assert np.ptp(cols) + 1 == 64
  assert 48 <= np.ptp(rows) + 1 <= 52


def test_layout(emoji3):
  d = emoji3
  assert d.imgs.shape == (3, 48, 3, 1, 64, 64) and d.imgs.dtype == np.uint8
  assert d.lbls.shape == d.scls.shape == (3, 48, 3, 1)
  assert d.psts.shape == (3, 48, 3, 1, 2)
  assert (d.num_classes, d.num_instances, d.num_channels) == (3, 1, 1)
  np.testing.assert_array_equal(d.lbls[1, 5, :, 0], [0, 1, 2])
  np.testing.assert_array_equal(d.scls[2, :, 1, 0], np.arange(64, 16, -1))
  assert d.lbldata == ["tired", "surprise", "smile-wink"]
  assert set(stir_file.METADATA_KEYS) <= set(d.metadata)
  assert "CC BY 4.0" in d.metadata["license"]
  stir_file.check_values(d)  # Labels, scales and positions are consistent.


def test_positions_replay_the_original_draw_order(emoji3):
  rng = np.random.RandomState(42)  # == np.random.seed(42) and global draws.
  expected = np.zeros((3, 48, 3, 2), np.int64)
  for label in range(3):
    for index, s in enumerate(range(64, 16, -1)):
      for split in range(3):
        expected[split, index, label] = rng.randint(0, 64 - s + 1, 2)
  np.testing.assert_array_equal(emoji3.psts[..., 0, :], expected)
  assert emoji3.psts[..., 0].max() > 0 and emoji3.psts[..., 1].max() > 0


def test_icon_lies_inside_and_fills_its_box(emoji3):
  d = emoji3
  for split in range(3):
    for index in range(48):
      for label in range(3):
        image = d.imgs[split, index, label, 0]
        x, y = d.psts[split, index, label, 0]
        s = d.scls[split, index, label, 0]
        inside = np.zeros_like(image, bool)
        inside[y:y + s, x:x + s] = True
        assert not image[~inside].any(), (split, index, label)
        rows, cols = np.nonzero(image)
        # x is the column, y the row; the ink extent is s - 2 .. s in both directions.
        assert y <= rows.min() <= y + 1 and y + s - 2 <= rows.max() <= y + s - 1
        assert x <= cols.min() <= x + 1 and x + s - 2 <= cols.max() <= x + s - 1
        # The same render is used at every split.
        np.testing.assert_array_equal(image[y:y + s, x:x + s],
                                      d.imgs[0, index, label, 0][
                                          d.psts[0, index, label, 0, 1]:][:s,
                                          d.psts[0, index, label, 0, 0]:][:, :s])


def test_deterministic_and_prefix_consistent(emoji3):
  again = emoji.generate_emoji(emoji.EMOJI_NAMES[:2], seed=42, progress=False)
  # Draws run icon by icon, so 2 icons are exactly the first 2 classes of 3.
  for key in ("imgs", "lbls", "scls", "psts"):
    np.testing.assert_array_equal(getattr(again, key), getattr(emoji3, key)[:, :, :2])
  other = emoji.generate_emoji(emoji.EMOJI_NAMES[:1], seed=7, progress=False)
  assert not np.array_equal(other.psts, emoji3.psts[:, :, :1])
