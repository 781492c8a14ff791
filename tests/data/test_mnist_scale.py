"""Tests of the MNIST-scale generator, its file, command line, tf.data input and TFDS builder.

Most checks run on a tiny MNIST-layout folder written here (square "digits" whose size is known);
the Fashion-MNIST checks use Debian's IDX files (same format as MNIST, which is not reachable
here), skipped where that package is missing, as in tests/data/test_mnist.py.
"""
import numpy as np
import pytest

from stir_jax.data import mnist
from stir_jax.data import mnist_scale
from stir_jax.data import recipes
from tests.data.test_mnist import write_idx
from tests.data.test_stir_file import assert_one_line_error
from tests.data.test_stir_file import run_cli

SIZES = {"train": 60, "valid": 20, "test": 100}
HAS_FASHION = mnist.DEBIAN_FASHION_MNIST.is_dir()


def square_digits(count: int, seed: int):
  """Labels 0..9 with unequal class counts; each image a bright square of side 12..24 centred at
  (14, 14) (rows and columns 14 - side/2 .. 14 + side/2 - 1)."""
  rng = np.random.RandomState(seed)
  labels = np.minimum(rng.geometric(0.25, count) - 1, 9).astype(np.uint8)
  images = np.zeros((count, 28, 28), np.uint8)
  for i in range(count):
    half = rng.randint(6, 13)
    images[i, 14 - half:14 + half, 14 - half:14 + half] = 255
  return images, labels


@pytest.fixture(scope="module")
def idx_folder(tmp_path_factory):
  """300 train + 100 test square digits in the MNIST IDX layout (gzipped train, raw test)."""
  folder = tmp_path_factory.mktemp("idx")
  train_x, train_y = square_digits(300, 0)
  test_x, test_y = square_digits(100, 1)
  write_idx(folder / "train-images-idx3-ubyte", train_x)
  write_idx(folder / "train-labels-idx1-ubyte", train_y)
  write_idx(folder / "t10k-images-idx3-ubyte", test_x, compress=False)
  write_idx(folder / "t10k-labels-idx1-ubyte", test_y, compress=False)
  return folder


@pytest.fixture(scope="module")
def source(idx_folder):
  return mnist.read_idx_folder(idx_folder)


@pytest.fixture(scope="module")
def tiny(source):
  return mnist_scale.generate_mnist_scale(source, 0, sizes=SIZES, progress=False)


def _all(source):
  return (np.concatenate([source.train_images, source.test_images]),
          np.concatenate([source.train_labels, source.test_labels]))


def test_stratified_split_sizes_and_proportions():
  rng = np.random.default_rng(0)
  labels = np.repeat(np.arange(5), [700, 20, 133, 1000, 1])
  parts = mnist_scale.stratified_split(labels, (300, 1000), rng)
  assert [len(p) for p in parts] == [300, 1000]
  assert len(np.intersect1d(parts[0], parts[1])) == 0
  counts = np.bincount(labels)
  for part in parts[:1]:  # the first part: proportional to the whole, within one per class
    np.testing.assert_allclose(np.bincount(labels[part], minlength=5),
                               counts * len(part) / len(labels), atol=1)
  # the second: proportional to what the first left
  left = counts - np.bincount(labels[parts[0]], minlength=5)
  np.testing.assert_allclose(np.bincount(labels[parts[1]], minlength=5),
                             left * 1000 / left.sum(), atol=1)
  again = mnist_scale.stratified_split(labels, (300, 1000), np.random.default_rng(0))
  np.testing.assert_array_equal(again[1], parts[1])
  with pytest.raises(recipes.GenerationError, match="needs 2000"):
    mnist_scale.stratified_split(labels, (1000, 1000), rng)
  np.testing.assert_array_equal(mnist_scale.apportion(np.array([1, 1, 1]), 2), [1, 1, 0])


def test_generated_splits(tiny, source):
  images, labels = _all(source)
  counts = np.bincount(labels, minlength=10)
  assert {s: len(tiny.labels[s]) for s in mnist_scale.SPLITS} == SIZES
  assert {s: tiny.images[s].shape for s in mnist_scale.SPLITS} == {
      s: (n, 28, 28) for s, n in SIZES.items()}
  sources = np.concatenate([tiny.sources[s] for s in mnist_scale.SPLITS])
  assert len(np.unique(sources)) == sum(SIZES.values())  # disjoint
  for split in mnist_scale.SPLITS:
    np.testing.assert_array_equal(tiny.labels[split], labels[tiny.sources[split]])
  # stratified: test and train+valid in the proportions of all 400, train and valid in those of
  # train+valid (within one example per class)
  both = np.concatenate([tiny.labels["train"], tiny.labels["valid"]])
  np.testing.assert_allclose(np.bincount(both, minlength=10), counts * 80 / 400, atol=1)
  np.testing.assert_allclose(np.bincount(tiny.labels["test"], minlength=10),
                             counts * 100 / 400, atol=1.5)
  np.testing.assert_allclose(np.bincount(tiny.labels["valid"], minlength=10),
                             np.bincount(both, minlength=10) * 20 / 80, atol=1)
  # the images are the sources rescaled by their recorded scale, in [0.3, 1.0)
  for split in mnist_scale.SPLITS:
    s = tiny.scales[split]
    assert s.dtype == np.float32 and s.min() >= 0.3 and s.max() < 1.0
    for j in (0, len(s) - 1):
      np.testing.assert_array_equal(
          tiny.images[split][j], mnist_scale.rescale(images[tiny.sources[split][j]],
                                                     float(s[j])))
  assert np.ptp(np.concatenate([tiny.scales[s] for s in mnist_scale.SPLITS])) > 0.5


def test_scale_shrinks_the_bounding_box(tiny, source):
  """A centred square of side a becomes a centred square of side about s * a."""
  images, _ = _all(source)
  for split in mnist_scale.SPLITS:
    for image, s, i in zip(tiny.images[split], tiny.scales[split], tiny.sources[split]):
      side = np.count_nonzero(images[i][14] > 127)  # the source square's side
      rows, cols = np.nonzero(image > 127)
      assert abs(np.ptp(rows) + 1 - s * side) <= 1.5 and abs(np.ptp(cols) + 1 - s * side) <= 1.5
      # about the centre 14.5 of the 2019 torchvision (the square's own centre is 14)
      assert abs((rows.min() + rows.max() + 1) / 2 - (14 + 0.5 * (1 - s))) <= 0.75
  assert np.array_equal(mnist_scale.rescale(images[0], 1.0), images[0])  # s = 1: unchanged


def test_seeds_are_deterministic_and_differ(tiny, source):
  again = mnist_scale.generate_mnist_scale(source, 0, sizes=SIZES, progress=False)
  other = mnist_scale.generate_mnist_scale(source, 1, sizes=SIZES, progress=False)
  for split in mnist_scale.SPLITS:
    for field in ("images", "labels", "scales", "sources"):
      np.testing.assert_array_equal(getattr(again, field)[split], getattr(tiny, field)[split])
    assert not np.array_equal(other.sources[split], tiny.sources[split])
    assert not np.array_equal(other.scales[split], tiny.scales[split])
  assert other.seed == 1 and "default_rng(1)" in other.metadata["description"]


def test_file_round_trip_and_errors(tiny, tmp_path):
  path = mnist_scale.save_mnist_scale(tmp_path / "ms.npz", tiny)
  assert mnist_scale.is_mnist_scale_file(path)
  loaded = mnist_scale.load_mnist_scale(path)
  for field in ("images", "labels", "scales", "sources"):
    for split in mnist_scale.SPLITS:
      np.testing.assert_array_equal(getattr(loaded, field)[split], getattr(tiny, field)[split])
  assert loaded.metadata == tiny.metadata and loaded.lbldata == tiny.lbldata
  assert loaded.seed == 0 and loaded.scale_range == (0.3, 1.0)
  assert "train: 60 images" in mnist_scale.summarize(loaded)
  with np.load(path) as f:
    arrays = {k: f[k] for k in f.files}
  np.savez(tmp_path / "no_test.npz", **{k: v for k, v in arrays.items() if k != "test_images"})
  with pytest.raises(mnist_scale.DataFileError, match="missing key.*test_images"):
    mnist_scale.load_mnist_scale(tmp_path / "no_test.npz")
  np.savez(tmp_path / "dup.npz", **dict(arrays, test_sources=arrays["test_sources"] * 0))
  with pytest.raises(mnist_scale.DataFileError, match="twice"):
    mnist_scale.load_mnist_scale(tmp_path / "dup.npz")
  (tmp_path / "cut.npz").write_bytes(path.read_bytes()[:2000])
  assert not mnist_scale.is_mnist_scale_file(tmp_path / "cut.npz")
  with pytest.raises(mnist_scale.DataFileError, match="cut.npz"):
    mnist_scale.load_mnist_scale(tmp_path / "cut.npz")


def test_cli(idx_folder, tmp_path):
  out = tmp_path / "mnist_scale_2.npz"
  sizes = ["--train-size", "50", "--val-size", "10", "--test-size", "40", "--quiet"]
  result = run_cli("mnist-scale", "--idx-dir", idx_folder, "--seed", "2", "--out", out, *sizes)
  assert result.returncode == 0, result.stderr
  assert "wrote" in result.stdout and "test: 40 images" in result.stdout
  data = mnist_scale.load_mnist_scale(out)
  assert data.seed == 2 and len(data.labels["valid"]) == 10
  before = out.read_bytes()
  assert_one_line_error(run_cli("mnist-scale", "--idx-dir", idx_folder, "--out", out, *sizes),
                        "already exists")
  assert_one_line_error(run_cli("mnist-scale", "--idx-dir", idx_folder, "--out", out, "--force",
                                *sizes, "--test-size", "400"), "needs 460", "has 400")
  assert out.read_bytes() == before  # a failed run leaves the existing file alone
  assert_one_line_error(run_cli("mnist-scale", "--idx-dir", tmp_path / "nope", "--out",
                                tmp_path / "x.npz"), "--idx-dir", "does not exist")
  assert_one_line_error(run_cli("mnist-scale", "--idx-dir", idx_folder, "--out",
                                tmp_path / "x.npz", "--min-scale", "0"), "--min-scale")
  assert not (tmp_path / "x.npz").exists()
  check = run_cli("check", out)
  assert check.returncode == 0 and "OK" in check.stdout and "seed: 2" in check.stdout
  show = run_cli("show", out, "--out", tmp_path / "grid.png", "--split", "train")
  assert show.returncode == 0, show.stderr
  assert (tmp_path / "grid.png").stat().st_size > 5_000
  assert_one_line_error(run_cli("show", out, "--out", tmp_path / "g.png", "--scales", "0.2"),
                        "scale factors in 0.3..1")
  assert_one_line_error(run_cli("show", out, "--out", tmp_path / "g.png", "--scales", "big"),
                        "comma-separated numbers")
  assert not (tmp_path / "g.png").exists()


def test_make_dataset_batches(tiny):
  from stir_jax.data import pipeline
  ds = mnist_scale.make_dataset(tiny, "valid", batch_size=8, shuffle=False, pad_remainder=True)
  batches = list(pipeline.iterate(ds))
  assert [len(b["label"]) for b in batches] == [8, 8, 8]
  assert [int(b["mask"].sum()) for b in batches] == [8, 8, 4]
  first = batches[0]
  assert first["image"].shape == (8, 28, 28, 1) and first["image"].dtype == np.float32
  np.testing.assert_array_equal(first["image"][..., 0] * 255, tiny.images["valid"][:8])
  np.testing.assert_array_equal(first["scale"], tiny.scales["valid"][:8])
  # two processes: each yields its half of the same global batches
  halves = [list(pipeline.iterate(mnist_scale.make_dataset(
      tiny, "train", batch_size=8, shuffle=True, seed=3, process_index=p, process_count=2,
      pad_remainder=True))) for p in (0, 1)]
  whole = list(pipeline.iterate(mnist_scale.make_dataset(tiny, "train", batch_size=8,
                                                         shuffle=True, seed=3,
                                                         pad_remainder=True)))
  for a, b, w in zip(*halves, whole):
    np.testing.assert_array_equal(np.concatenate([a["label"], b["label"]]), w["label"])
  assert sum(int(w["mask"].sum()) for w in whole) == 60


def test_tfds_builder(tiny, tmp_path):
  from stir_jax.data import pipeline, tf_cpu
  tfds = tf_cpu.tensorflow_datasets()
  manual = tmp_path / "manual"
  manual.mkdir()
  mnist_scale.save_mnist_scale(manual / "mnist_scale_0.npz", tiny)
  source = pipeline.TfdsSource("mnist_scale/seed_0", data_dir=str(tmp_path / "data"),
                               download_and_prepare_kwargs={
                                   "download_config": tfds.download.DownloadConfig(
                                       manual_dir=str(manual))})
  for split in mnist_scale.SPLITS:
    got = mnist_scale.host_arrays(source, split)
    want = mnist_scale.host_arrays(tiny, split)
    for key in ("image", "label", "scale"):
      np.testing.assert_array_equal(got[key], want[key])
  info = tfds.builder("mnist_scale/seed_0", data_dir=str(tmp_path / "data")).info
  assert info.features["label"].num_classes == 10
  assert {k: v.num_examples for k, v in info.splits.items()} == {
      "train": 60, "validation": 20, "test": 100}


@pytest.mark.skipif(not HAS_FASHION, reason="no Debian Fashion-MNIST")
def test_fashion_mnist_realisation():
  """From the 70 000 real Fashion-MNIST images (balanced classes): exact per-class quotas, and
  the object's extent (pixels above 30) shrinks with s."""
  src = mnist.read_idx_folder(mnist.DEBIAN_FASHION_MNIST)
  data = mnist_scale.generate_mnist_scale(src, 0, sizes={"train": 1000, "valid": 200,
                                                         "test": 5000}, progress=False)
  for split, n in (("train", 100), ("valid", 20), ("test", 500)):
    np.testing.assert_array_equal(np.bincount(data.labels[split], minlength=10), [n] * 10)
  images, _ = _all(src)
  extent = lambda im: np.ptp(np.nonzero((im > 30).any(axis=0))[0]) + 1
  ratio = np.array([extent(im) / extent(images[i])
                    for im, i in zip(data.images["test"], data.sources["test"])])
  s = data.scales["test"]
  assert np.corrcoef(ratio, s)[0, 1] > 0.97
  assert np.median(np.abs(ratio - s)) < 0.05
