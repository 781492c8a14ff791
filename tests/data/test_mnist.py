"""Tests of the digit recipe, IDX reading and the mnist / fashion_mnist generators."""
import gzip
import pathlib
import struct

import numpy as np
import pytest

from stir_jax.data import mnist
from stir_jax.data import recipes
from stir_jax.data import stir_file
from tests.data.test_stir_file import assert_one_line_error
from tests.data.test_stir_file import run_cli


def write_idx(path: pathlib.Path, array: np.ndarray, compress: bool = True) -> pathlib.Path:
  """Writes a uint8 array in the IDX format (gzipped when ``compress``)."""
  raw = struct.pack(">BBBB", 0, 0, 0x08, array.ndim)
  raw += struct.pack(f">{array.ndim}I", *array.shape) + array.astype(np.uint8).tobytes()
  if compress:
    path = path.with_name(path.name + ".gz")
    path.write_bytes(gzip.compress(raw))
  else:
    path.write_bytes(raw)
  return path


def fake_digits(rng, count: int, classes: int = 3):
  """Blob images whose brightness encodes their index (so each source image is recognisable)."""
  labels = np.arange(count) % classes
  images = np.zeros((count, 28, 28), np.uint8)
  for i in range(count):
    w = 6 + (i % 5) * 3
    images[i, 4:24, 14 - w // 2:14 + w // 2] = 100 + i % 150
  return images, labels.astype(np.uint8)


@pytest.fixture(scope="module")
def idx_folder(tmp_path_factory):
  """A small MNIST-layout folder: 30 train and 12 test images of 3 classes, mixed gz / raw."""
  folder = tmp_path_factory.mktemp("idx")
  rng = np.random.RandomState(0)
  train_x, train_y = fake_digits(rng, 30)
  test_x, test_y = fake_digits(rng, 12)
  write_idx(folder / "train-images-idx3-ubyte", train_x)
  write_idx(folder / "train-labels-idx1-ubyte", train_y)
  write_idx(folder / "t10k-images-idx3-ubyte", test_x, compress=False)
  write_idx(folder / "t10k-labels-idx1-ubyte", test_y, compress=False)
  return folder


def test_read_idx_gz_and_raw(idx_folder):
  source = mnist.read_idx_folder(idx_folder)
  assert source.train_images.shape == (30, 28, 28) and source.test_images.shape == (12, 28, 28)
  np.testing.assert_array_equal(source.train_labels, np.arange(30) % 3)
  assert mnist.find_idx(idx_folder, "t10k-images-idx3-ubyte").suffix != ".gz"


def test_read_idx_rejects_damage(tmp_path, idx_folder):
  raw = (idx_folder / "t10k-images-idx3-ubyte").read_bytes()
  (tmp_path / "short").write_bytes(raw[:-10])
  with pytest.raises(recipes.GenerationError, match="truncated"):
    mnist.read_idx(tmp_path / "short")
  gz = (idx_folder / "train-images-idx3-ubyte.gz").read_bytes()
  (tmp_path / "cut.gz").write_bytes(gz[:len(gz) // 2])
  with pytest.raises(recipes.GenerationError, match="cut.gz"):
    mnist.read_idx(tmp_path / "cut.gz")
  (tmp_path / "text").write_bytes(b"hello world")
  with pytest.raises(recipes.GenerationError, match="not an IDX file"):
    mnist.read_idx(tmp_path / "text")
  with pytest.raises(recipes.GenerationError, match="empty"):
    (tmp_path / "empty").mkdir()
    mnist.read_idx_folder(tmp_path / "empty")


def test_resize_matches_skimage():
  """The spline resize is skimage.transform.resize(order=3, preserve_range=True) - checked when
  scikit-image is installed (it is not a dependency)."""
  transform = pytest.importorskip("skimage.transform")
  filters = pytest.importorskip("skimage.filters")
  rng = np.random.RandomState(1)
  image = rng.randint(0, 256, (28, 28)).astype(np.uint8)
  for s in (17, 27, 28, 29, 64):
    expected = transform.resize(image.astype(float), (s, s), order=3, preserve_range=True)
    np.testing.assert_allclose(recipes.resize_spline(image, s), expected, atol=1e-9)
    colour = rng.randint(0, 256, (32, 32, 3)).astype(np.uint8)
    np.testing.assert_allclose(
        recipes.resize_spline(colour, s),
        transform.resize(colour.astype(float), (s, s, 3), order=3, preserve_range=True),
        atol=1e-9)
    x, y = 64 - s, 0
    ref = np.pad(expected, ((y, 64 - s - y), (x, 64 - s - x)))
    ref = filters.gaussian(ref, sigma=7 / 8 * s / 28)
    ref = 2 / np.pi * np.arctan(0.02 * (ref - 128))
    ref = (255 * (ref - ref.min()) / (ref.max() - ref.min())).astype(np.uint8)
    np.testing.assert_array_equal(recipes.digit_image(image, s, x, y), ref)


def test_digit_image_places_the_object():
  image = np.zeros((28, 28), np.uint8)
  image[4:24, 4:24] = 255
  out = recipes.digit_image(image, 30, x=5, y=20)
  assert out.shape == (64, 64) and out.dtype == np.uint8
  assert out.min() == 0 and out.max() == 255
  rows, cols = np.nonzero(out > 128)
  assert 20 <= rows.min() and rows.max() < 50 and 5 <= cols.min() and cols.max() < 35
  with pytest.raises(ValueError, match="does not fit"):
    recipes.place(np.zeros((30, 30)), 40, 0)


def test_generate_digits(idx_folder):
  source = mnist.read_idx_folder(idx_folder)
  data = mnist.generate_digits(source, ["a", "b", "c"], instances=2, seed=3, progress=False)
  assert data.imgs.shape == (3, 48, 3, 2, 64, 64) and data.imgs.dtype == np.uint8
  stir_file.check_values(data)
  assert data.lbldata == ["a", "b", "c"]
  assert set(stir_file.METADATA_KEYS) <= set(data.metadata)
  assert "stir_jax" in data.metadata["author"]
  # Positions replay one RandomState: class, size, split, instance.
  rng = np.random.RandomState(3)
  for label in range(3):
    for index, s in enumerate(range(64, 16, -1)):
      for split in range(3):
        for j in range(2):
          np.testing.assert_array_equal(data.psts[split, index, label, j],
                                        rng.randint(0, 64 - s + 1, 2))
  # Sources: train/valid from the training images (first and next 2 after the seeded shuffle),
  # test from the test images; an instance is the same source image at every size.
  train = recipes.pick_per_class(source.train_labels, range(3), 4, 3)
  test = recipes.pick_per_class(source.test_labels, range(3), 2, 3)
  sources = {0: source.train_images[train[1][:2]], 1: source.train_images[train[1][2:]],
             2: source.test_images[test[1]]}
  for split, images in sources.items():
    for j in range(2):
      for index in (0, 20, 47):
        s = 64 - index
        x, y = data.psts[split, index, 1, j]
        np.testing.assert_array_equal(data.imgs[split, index, 1, j],
                                      recipes.digit_image(images[j], s, x, y))
  again = mnist.generate_digits(source, ["a", "b", "c"], instances=2, seed=3, progress=False)
  np.testing.assert_array_equal(again.imgs, data.imgs)


def test_too_few_images_names_the_class(idx_folder):
  source = mnist.read_idx_folder(idx_folder)
  with pytest.raises(recipes.GenerationError, match=r"class 0 has 4.*class 1 has 4"):
    mnist.generate_digits(source, ["a", "b", "c"], instances=5, progress=False)  # 4 test images each.


def test_cli_mnist_from_idx(idx_folder, tmp_path):
  out = tmp_path / "mnist.npz"
  result = run_cli("generate", "--domain", "mnist", "--source", idx_folder, "--out", out,
                   "--classes", "2", "--instances", "1", "--quiet")
  assert result.returncode == 0, result.stderr
  data = stir_file.load_stir(out)
  assert data.imgs.shape == (3, 48, 2, 1, 64, 64) and data.lbldata == ["0", "1"]
  assert "MNIST" in data.metadata["title"]


def test_cli_source_errors(tmp_path, idx_folder):
  out = tmp_path / "m.npz"
  assert_one_line_error(run_cli("generate", "--domain", "mnist", "--source", tmp_path / "nope",
                                "--out", out), "does not exist")
  (tmp_path / "empty").mkdir()
  assert_one_line_error(run_cli("generate", "--domain", "fashion_mnist", "--source",
                                tmp_path / "empty", "--out", out), "is empty")
  broken = tmp_path / "broken"
  broken.mkdir()
  for f in idx_folder.iterdir():
    data = f.read_bytes()
    (broken / f.name).write_bytes(data[:len(data) // 2] if f.name.startswith("train-images")
                                  else data)
  assert_one_line_error(run_cli("generate", "--domain", "mnist", "--source", broken, "--out", out),
                        "train-images-idx3-ubyte.gz")
  assert_one_line_error(run_cli("generate", "--domain", "mnist", "--source", idx_folder,
                                "--out", out, "--instances", "9", "--quiet"), "too few")
  assert not out.exists()


@pytest.mark.skipif(not mnist.DEBIAN_FASHION_MNIST.is_dir(), reason="no Debian Fashion-MNIST")
def test_fashion_mnist_from_debian():
  source = mnist.read_idx_folder(mnist.DEBIAN_FASHION_MNIST)
  assert source.train_images.shape == (60000, 28, 28) and source.test_images.shape == (10000, 28, 28)
  sub = mnist.DigitSource(source.train_images, source.train_labels, source.test_images,
                          source.test_labels, origin="debian")
  data = mnist.generate_digits(sub, mnist.FASHION_MNIST_NAMES[:1], domain="fashion_mnist",
                               instances=1, progress=False)
  assert data.lbldata == ["T-shirt/top"] and "Fashion-MNIST" in data.metadata["title"]
  assert "MIT" in data.metadata["license"]


@pytest.mark.slow
@pytest.mark.skipif(not mnist.DEBIAN_FASHION_MNIST.is_dir(), reason="no Debian Fashion-MNIST")
def test_full_fashion_mnist(tmp_path):
  """The whole domain (about 1.5 minutes): 10 classes x 50 instances, valid and reloadable."""
  out = tmp_path / "fashion_mnist.npz"
  result = run_cli("generate", "--domain", "fashion_mnist", "--out", out, "--quiet")
  assert result.returncode == 0, result.stderr
  data = stir_file.load_stir(out)
  assert data.imgs.shape == (3, 48, 10, 50, 64, 64)
  assert data.lbldata == list(mnist.FASHION_MNIST_NAMES)
