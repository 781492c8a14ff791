"""Tests of the TFDS builder ``stir``, the TFDS input path and the tfds:/tfds-boxes: generators.

Everything is offline: the builder reads a generated file from a temporary manual folder, and the
generic generators run under ``tfds.testing.mock_data``.
"""
import numpy as np
import pytest

from stir_jax.data import pipeline
from stir_jax.data import recipes
from stir_jax.data import stir_file
from stir_jax.data import tf_cpu
from tests.data.conftest import take_classes

tfds = tf_cpu.tensorflow_datasets()  # TensorFlow on the CPU only; [test] installs it
from stir_jax.data import tfds_sources  # pylint: disable=g-import-not-at-top,wrong-import-position
from stir_jax.data import tfds_stir  # pylint: disable=g-import-not-at-top,wrong-import-position


@pytest.fixture(scope="module")
def prepared(emoji3, tmp_path_factory):
  """stir/emoji prepared from a 3-icon file in a temporary manual folder."""
  root = tmp_path_factory.mktemp("tfds")
  manual = root / "manual"
  manual.mkdir()
  stir_file.save_stir(manual / "emoji.npz", emoji3)
  kwargs = {"download_config": tfds.download.DownloadConfig(manual_dir=str(manual))}
  ds, info = tfds.load("stir/emoji", data_dir=str(root / "data"), with_info=True,
                       download_and_prepare_kwargs=kwargs)
  source = pipeline.TfdsSource("stir/emoji", data_dir=str(root / "data"))
  return ds, info, source


def test_builder_features_and_splits(prepared, emoji3):
  ds, info, _ = prepared
  assert isinstance(tfds.builder("stir/emoji"), tfds_stir.Stir)
  assert [c.name for c in tfds_stir.Stir.BUILDER_CONFIGS] == [
      "emoji", "mnist", "fashion_mnist", "trafficsign", "aerial"]
  features = info.features
  assert features["image"].shape == (64, 64, 1) and features["image"].dtype == np.uint8
  assert features["label"].names == ["tired", "surprise", "smile-wink"]
  assert features["scale"].dtype == np.int32 and features["instance"].dtype == np.int32
  assert features["position"].shape == (2,) and features["position"].dtype == np.int32
  assert {k: v.num_examples for k, v in info.splits.items()} == {
      "train": 144, "validation": 144, "test": 144}
  for split, index in (("train", 0), ("validation", 1), ("test", 2)):
    examples = list(tfds.as_numpy(ds[split]))
    images = np.stack([e["image"][..., 0] for e in examples]).reshape(48, 3, 1, 64, 64)
    np.testing.assert_array_equal(images, emoji3.imgs[index])  # Pixels equal the npz's.
    for key, array in (("label", emoji3.lbls), ("scale", emoji3.scls)):
      np.testing.assert_array_equal(np.array([e[key] for e in examples]).reshape(48, 3, 1),
                                    array[index])
    np.testing.assert_array_equal(np.stack([e["position"] for e in examples]).reshape(48, 3, 1, 2),
                                  emoji3.psts[index])
    assert {int(e["instance"]) for e in examples} == {0}


class _OfflineDownloads:
  """A download manager with no manual folder and no network."""

  @property
  def manual_dir(self):
    raise AssertionError("Manual directory does not exist or is empty")

  def download(self, url):
    raise OSError(f"offline: {url}")


def test_builder_source_order_and_clear_failure(tmp_path, emoji3):
  builder = tfds.builder("stir/trafficsign", data_dir=str(tmp_path / "data"))
  with pytest.raises(RuntimeError, match=r"no trafficsign.npz in the manual folder; download "
                     r"from Zenodo failed \(OSError: offline: https://zenodo.org/record/6578038/"
                     r"files/trafficsign.npz\)"):
    builder._obtain(_OfflineDownloads())  # pylint: disable=protected-access
  # A manual file wins over everything else.
  manual = tmp_path / "manual"
  manual.mkdir()
  stir_file.save_stir(manual / "emoji.npz", take_classes(emoji3, 1))

  class Manual(_OfflineDownloads):
    manual_dir = manual

  data = tfds.builder("stir/emoji", data_dir=str(tmp_path / "data"))._obtain(Manual())  # pylint: disable=protected-access
  assert data.lbldata == ["tired"]


@pytest.mark.parametrize("count,pad", [(1, False), (3, False), (3, True)])
def test_tfds_shares_equal_npz_shares(prepared, emoji3, count, pad):
  _, _, source = prepared
  for split, scenario in (("train", 2), ("test", 2), ("valid", 1), ("test_all", None)):
    union = []
    for index in range(count):
      from_tfds = pipeline.host_arrays(source, split, scenario, process_index=index,
                                       process_count=count, pad=pad)
      from_npz = pipeline.host_arrays(emoji3, split, scenario, process_index=index,
                                      process_count=count, pad=pad)
      assert from_tfds.keys() == from_npz.keys()
      for key in from_npz:
        np.testing.assert_array_equal(from_tfds[key], from_npz[key], err_msg=(split, key))
      union.append(from_npz)
    if pad:  # The masked examples of all hosts are the split, each exactly once.
      everything = pipeline.select(emoji3, split, pipeline._resolve_scales(  # pylint: disable=protected-access
          scenario, split, None))
      kept = np.concatenate([u["image"][u["mask"]] for u in union])
      np.testing.assert_array_equal(kept, everything["image"])


def test_make_dataset_from_tfds(prepared, emoji3):
  _, _, source = prepared
  ds = pipeline.make_dataset(source, "test", 3, batch_size=32, shuffle=False, process_index=1,
                             process_count=2, pad_remainder=True)
  ref = pipeline.make_dataset(emoji3, "test", 3, batch_size=32, shuffle=False, process_index=1,
                              process_count=2, pad_remainder=True)
  for a, b in zip(pipeline.iterate(ds), pipeline.iterate(ref), strict=True):
    assert a["image"].shape == (16, 64, 64, 1)
    for key in a:
      np.testing.assert_array_equal(a[key], b[key])


def test_tfds_classification_with_mock_data():
  with tfds.testing.mock_data(num_examples=60):
    data, skipped = tfds_sources.generate_tfds_classification("cifar10", instances=2, classes=2,
                                                              seed=1, progress=False)
    again, _ = tfds_sources.generate_tfds_classification("cifar10", instances=2, classes=2,
                                                         seed=1, progress=False)
  assert skipped.count == 0
  assert data.imgs.shape == (3, 48, 2, 2, 64, 64, 3)
  names = tfds.builder("cifar10").info.features["label"].names  # Mocked metadata may lack names.
  assert data.lbldata == names[:2]
  stir_file.check_values(data)
  np.testing.assert_array_equal(data.imgs, again.imgs)
  assert "tfds:cifar10" in data.metadata["title"]
  # Colour is kept and the image lies in its box: black outside, content inside.
  for split, index, label, j in ((0, 0, 0, 0), (2, 30, 1, 1)):
    image = data.imgs[split, index, label, j]
    x, y = data.psts[split, index, label, j]
    s = 64 - index
    inside = np.zeros((64, 64), bool)
    inside[y:y + s, x:x + s] = True
    assert not image[~inside].any() and image[inside].std() > 10


def test_tfds_classification_errors():
  with tfds.testing.mock_data(num_examples=12):
    with pytest.raises(recipes.GenerationError, match="too few cifar10 train images"):
      tfds_sources.generate_tfds_classification("cifar10", instances=5, progress=False)
  with pytest.raises(recipes.GenerationError, match="unknown TFDS dataset"):
    tfds_sources.generate_tfds_classification("no_such_dataset_xyz", progress=False)


def _detections(self, split, decoders=None, read_config=None, shuffle_files=False, **kwargs):
  """Mocked coco/2017 split: 24 photos of 300 x 300, one square object each (labels 0 and 1), and
  one box too large to qualify (over a quarter of the photo)."""
  del self, decoders, read_config, shuffle_files, kwargs
  tf = tf_cpu.tensorflow()

  def examples():
    for i in range(24):
      rng = np.random.RandomState(i + (100 if split == "validation" else 0))
      image = rng.randint(0, 40, (300, 300, 3)).astype(np.uint8)
      side = 64 + (i // 2) % 11  # 64..74 px: every object qualifies.
      image[50:50 + side, 60:60 + side] = (200, 30 * (i % 2), 30)
      bbox = np.array([[50 / 300, 60 / 300, (50 + side) / 300, (60 + side) / 300],
                       [0.0, 0.0, 0.9, 0.9]], np.float32)  # The second is too large.
      yield {"image": image, "objects": {"bbox": bbox, "label": np.array([i % 2, 1], np.int64),
                                          "is_crowd": np.array([False, False])}}

  return tf.data.Dataset.from_generator(examples, output_signature={
      "image": tf.TensorSpec((300, 300, 3), tf.uint8),
      "objects": {"bbox": tf.TensorSpec((None, 4), tf.float32),
                  "label": tf.TensorSpec((None,), tf.int64),
                  "is_crowd": tf.TensorSpec((None,), tf.bool)}})


def test_tfds_boxes_with_mock_data():
  with tfds.testing.mock_data(as_dataset_fn=_detections):
    data, skipped = tfds_sources.generate_tfds_boxes("coco/2017", instances=2, seed=0,
                                                     progress=False, log=lambda line: None)
    names = tfds.builder("coco/2017").info.features["objects"]["label"].names
    with pytest.raises(recipes.GenerationError, match=r"no class has 30 .*' 12, '.*' 12"):
      tfds_sources.generate_tfds_boxes("coco/2017", instances=10, progress=False,
                                       log=lambda line: None)
  assert data.lbldata == names[:2] and skipped.count == 0
  assert data.imgs.shape == (3, 48, 2, 2, 64, 64, 3)
  stir_file.check_values(data)
  for index in (0, 47):
    s = 64 - index
    x, y = data.psts[1, index, 0, 1]
    centre = data.imgs[1, index, 0, 1, y + s // 2, x + s // 2].astype(int)
    assert centre[0] > 150 and centre[2] < 80


def _cifar_with_broken_images(self, split, decoders=None, read_config=None, shuffle_files=False,
                              **kwargs):
  """Mocked cifar10 (images left encoded, as SkipDecoding asks): class 0 has 2 good PNGs and 4
  that fail to decode; class 1 has 6 good ones."""
  del self, split, decoders, read_config, shuffle_files, kwargs
  tf = tf_cpu.tensorflow()
  from PIL import Image  # pylint: disable=g-import-not-at-top

  def examples():
    for i in range(12):
      label = i % 2
      image = np.full((32, 32, 3), 40 + 10 * i, np.uint8)
      buffer = __import__("io").BytesIO()
      Image.fromarray(image).save(buffer, format="PNG")
      data = buffer.getvalue()
      if label == 0 and i >= 4:
        data = data[:30]  # Truncated PNG.
      yield {"image": data, "label": np.int64(label)}

  return tf.data.Dataset.from_generator(examples, output_signature={
      "image": tf.TensorSpec((), tf.string), "label": tf.TensorSpec((), tf.int64)})


def test_tfds_classification_skips_undecodable_images():
  with tfds.testing.mock_data(as_dataset_fn=_cifar_with_broken_images):
    data, skipped = tfds_sources.generate_tfds_classification("cifar10", instances=1, classes=2,
                                                              seed=0, progress=False)
    with pytest.raises(recipes.GenerationError, match="class 0 has [23]"):  # Bad ones dropped.
      tfds_sources.generate_tfds_classification("cifar10", instances=2, classes=2, seed=0,
                                                progress=False)
  assert skipped.count >= 1 and "failed to decode" in skipped.report()
  # Class 0's train, valid and test instances are its two good images (values 40 and 60).
  for split in range(3):
    x, y = data.psts[split, 0, 0, 0]
    assert data.imgs[split, 0, 0, 0, y + 32, x + 32, 0] in (40, 60)
