"""Tests of scenarios, scale selection and the tf.data pipeline."""
import numpy as np
import pytest

from stir_jax.data import pipeline
from stir_jax.data import stir_file
from tests.data.conftest import synthetic


def test_scenarios():
  assert pipeline.SCENARIOS[1].name == "Small2Large"
  name, train, test = pipeline.SCENARIOS[2]
  assert name == "Mid2Rest" and list(train) == list(range(33, 49))
  assert list(test) == list(range(17, 33)) + list(range(49, 65))
  for sc in pipeline.SCENARIOS.values():
    if sc.name != "All2All":
      assert not set(sc.train_scales) & set(sc.test_scales)
      assert len(sc.train_scales) + len(sc.test_scales) == 48
  assert pipeline.scales_for(3, "valid") == list(range(49, 65))
  assert pipeline.scales_for("large2small", "test") == list(range(17, 49))
  assert pipeline.scales_for("M2R", "train") == list(range(33, 49))
  assert pipeline.scales_for(None, "test_all") == list(range(17, 65))
  with pytest.raises(ValueError, match="unknown scenario"):
    pipeline.get_scenario(5)
  with pytest.raises(ValueError, match="split"):
    pipeline.scales_for(1, "validation")


def test_parse_scales():
  assert pipeline.parse_scales("33-48") == list(range(33, 49))
  assert pipeline.parse_scales("17-32,49-64") == pipeline.scales_for(2, "test")
  assert pipeline.parse_scales("64, 17,20-21") == [17, 20, 21, 64]
  for bad in ("16-20", "a-b", "40-30", "", "65"):
    with pytest.raises(ValueError):
      pipeline.parse_scales(bad)


def test_counts(emoji2_path):
  expected = {  # scenario: (train, valid, test) images for 2 classes x 1 instance.
      1: (32, 32, 64), 2: (32, 32, 64), 3: (32, 32, 64), 4: (96, 96, 96)}
  for scenario, counts in expected.items():
    for split, count in zip(("train", "valid", "test"), counts):
      assert pipeline.num_examples(emoji2_path, split, scenario) == count
      arrays = pipeline.select(stir_file.load_stir(emoji2_path), split,
                               pipeline.scales_for(scenario, split))
      assert len(arrays["label"]) == count
  assert pipeline.num_examples(emoji2_path, "test_all", 1) == 96
  assert pipeline.num_examples(emoji2_path, "train", scales="17-20") == 8


def test_mid2rest_train_on_full_emoji_is_576():
  assert pipeline.num_examples(synthetic(36), "train", 2) == 576 == 16 * 36


def test_select_keeps_examples_aligned():
  data = synthetic(3, num_instances=2)
  arrays = pipeline.select(data, "valid", [20, 64])
  assert arrays["image"].shape == (12, 64, 64, 1) and arrays["image"].dtype == np.uint8
  for key in ("label", "scale", "position"):
    assert arrays[key].dtype == np.int32
  np.testing.assert_array_equal(arrays["scale"], [20] * 6 + [64] * 6)
  np.testing.assert_array_equal(arrays["label"], [0, 0, 1, 1, 2, 2] * 2)
  for image, label, s, (x, y) in zip(arrays["image"][..., 0], arrays["label"], arrays["scale"],
                                     arrays["position"]):
    assert (image[y:y + s, x:x + s] == label + 1).all() and image.sum() == (label + 1) * s * s


def _epoch(ds):
  return [(b["label"], b["scale"], b["position"]) for b in pipeline.iterate(ds)]


def _order(epoch):
  return np.concatenate([np.stack([lbl, s, p[:, 0], p[:, 1]], 1) for lbl, s, p in epoch])


def test_batches(emoji2_path):
  ds = pipeline.make_dataset(emoji2_path, "test", 2, batch_size=10, shuffle=False, seed=0)
  batches = list(pipeline.iterate(ds))
  assert [len(b["label"]) for b in batches] == [10] * 6 + [4]
  b = batches[0]
  assert b["image"].shape == (10, 64, 64, 1) and b["image"].dtype == np.float32
  assert b["label"].dtype == b["scale"].dtype == b["position"].dtype == np.int32
  assert b["position"].shape == (10, 2)
  images = np.concatenate([b["image"] for b in batches])
  assert images.min() == 0.0 and images.max() == 1.0
  expected = pipeline.select(stir_file.load_stir(emoji2_path), "test",
                             pipeline.scales_for(2, "test"))
  np.testing.assert_array_equal(images, expected["image"] / np.float32(255))
  np.testing.assert_array_equal(np.concatenate([b["scale"] for b in batches]), expected["scale"])
  dropped = pipeline.make_dataset(emoji2_path, "test", 2, batch_size=10, shuffle=False,
                                  drop_remainder=True)
  assert sum(1 for _ in pipeline.iterate(dropped)) == 6


def test_shuffle_is_seeded_and_reshuffles_each_epoch():
  data = synthetic(4)
  make = lambda seed: pipeline.make_dataset(data, "train", 4, batch_size=16, shuffle=True,
                                            seed=seed)
  ds_a, ds_b = make(3), make(3)
  a1, a2 = _order(_epoch(ds_a)), _order(_epoch(ds_a))
  b1, b2 = _order(_epoch(ds_b)), _order(_epoch(ds_b))
  np.testing.assert_array_equal(a1, b1)  # Same seed: same epochs.
  np.testing.assert_array_equal(a2, b2)
  assert not np.array_equal(a1, a2)  # A new epoch is a new order ...
  np.testing.assert_array_equal(np.unique(a1, axis=0), np.unique(a2, axis=0))  # ... same set.
  assert len(a1) == 192
  assert not np.array_equal(a1, _order(_epoch(make(4))))
  # Images stay with their labels after shuffling.
  batch = next(pipeline.iterate(ds_a))
  for image, label, s, (x, y) in zip(batch["image"][..., 0], batch["label"], batch["scale"],
                                     batch["position"]):
    assert np.allclose(image[y:y + s, x:x + s], (label + 1) / 255)


def test_paper_order_is_the_authors_permutation_every_epoch():
  """order= iterates one fixed permutation every epoch: `paper_order`, the authors' data module's
  numpy RandomState(42).shuffle of the whole selection (they shuffle the image array itself, along
  its first axis; the same draws permute an index vector alike)."""
  data = synthetic(4)
  n = 192
  images = pipeline.select(data, "train", pipeline.scales_for(4, "train"))["image"]
  theirs = images.copy()
  np.random.RandomState(42).shuffle(theirs)  # the authors' _shuffle_arrays, on the images
  order = pipeline.paper_order(n)
  np.testing.assert_array_equal(images[order], theirs)
  ds = pipeline.make_dataset(data, "train", 4, batch_size=16, shuffle=False, order=order)
  first, second = _order(_epoch(ds)), _order(_epoch(ds))
  np.testing.assert_array_equal(first, second)  # the same order every epoch
  plain = _order(_epoch(pipeline.make_dataset(data, "train", 4, batch_size=16, shuffle=False)))
  np.testing.assert_array_equal(first, plain[order])
  with pytest.raises(ValueError, match="not both"):
    pipeline.make_dataset(data, "train", 4, batch_size=16, shuffle=True, order=order)
  with pytest.raises(ValueError, match="permutation"):
    pipeline.make_dataset(data, "train", 4, batch_size=16, shuffle=False, order=order[:-1])


def _keys(arrays):
  """One hashable row per example: label, scale, x, y and an image checksum."""
  return [(int(l), int(s), int(p[0]), int(p[1]), int(im.astype(np.int64).sum()))
          for l, s, p, im in zip(arrays["label"], arrays["scale"], arrays["position"],
                                 arrays["image"])]


def test_global_batch_is_split_over_processes():
  data = synthetic(5)  # Scenario 1 train: 16 x 5 = 80 examples.
  with pytest.raises(ValueError, match="not divisible by process_count 3"):
    pipeline.make_dataset(data, "train", 1, batch_size=8, shuffle=False, process_count=3)
  with pytest.raises(ValueError, match="batch_size must be positive"):
    pipeline.make_dataset(data, "train", 1, batch_size=0, shuffle=False)
  with pytest.raises(ValueError, match="dropped .drop_remainder. or padded"):
    pipeline.make_dataset(data, "train", 1, batch_size=12, shuffle=False, process_count=3)
  ds = pipeline.make_dataset(data, "train", 1, batch_size=12, shuffle=True, seed=0,
                             process_index=1, process_count=3, drop_remainder=True)
  sizes = [len(b["label"]) for b in pipeline.iterate(ds)]
  assert sizes == [4] * 6  # 80 // 12 = 6 global batches, 12 / 3 = 4 examples each per process.
  assert pipeline.local_batch_size(12, 3) == 4


def _global_batches(data, processes: int, seed: int, epochs: int = 2) -> list[list[list]]:
  """Per epoch, the global batches (keys of the real examples, in order) that `processes` hosts
  assemble from their parts."""
  streams = [pipeline.make_dataset(data, "train", 4, batch_size=8, shuffle=True, seed=seed,
                                   process_index=p, process_count=processes, pad_remainder=True)
             for p in range(processes)]
  out = []
  for _ in range(epochs):
    epoch = []
    for parts in zip(*[pipeline.iterate(ds) for ds in streams], strict=True):
      assert {len(part["label"]) for part in parts} == {8 // processes}
      batch = {k: np.concatenate([part[k] for part in parts]) for k in parts[0]}
      keep = batch["mask"]
      epoch.append(_keys({k: batch[k][keep] for k in ("label", "scale", "position")}
                         | {"image": np.rint(batch["image"][keep] * 255).astype(np.uint8)}))
    out.append(epoch)
  return out


def test_global_batches_do_not_depend_on_the_number_of_hosts():
  data = synthetic(3)  # Scenario 4 train: 48 x 3 = 144 examples, 18 global batches of 8.
  one = _global_batches(data, 1, seed=5)
  assert len(one[0]) == 18 and one[0] != one[1]  # reshuffled every epoch
  assert sorted(k for b in one[0] for k in b) == sorted(_keys(pipeline.select(
      data, "train", pipeline.scales_for(4, "train"))))  # every example once per epoch
  for processes in (2, 4):
    assert _global_batches(data, processes, seed=5) == one
  assert _global_batches(data, 2, seed=6) != one  # the seed decides the order


def test_padded_evaluation_counts_every_example_once():
  data = synthetic(5)
  full = _keys(pipeline.select(data, "train", pipeline.scales_for(1, "train")))
  counted, steps = [], []
  for index in range(3):
    ds = pipeline.make_dataset(data, "train", 1, batch_size=24, shuffle=False,
                               process_index=index, process_count=3, pad_remainder=True)
    batches = list(pipeline.iterate(ds))
    steps.append(len(batches))
    assert all(b["image"].shape[0] == 8 and b["mask"].shape == (8,) for b in batches)
    for b in batches:
      keep = b["mask"]
      counted += _keys({"label": b["label"][keep], "scale": b["scale"][keep],
                        "position": b["position"][keep],
                        "image": np.rint(b["image"][keep] * 255).astype(np.uint8)})
  assert steps == [4, 4, 4]  # ceil(80 / 3) = 27 per process -> 4 local batches of 8.
  assert sorted(counted) == sorted(full) and len(counted) == 80


@pytest.mark.parametrize("total,count", [(80, 3), (7, 4), (3, 8), (48, 1)])
def test_share_ranges_tile_the_examples(total, count):
  padded = [pipeline.share_range(total, p, count, pad=True) for p in range(count)]
  assert all(length == -(-total // count) for _, length in padded)
  covered = [i for start, length in padded for i in range(start, start + length) if i < total]
  assert covered == list(range(total))
  plain = [pipeline.share_range(total, p, count, pad=False) for p in range(count)]
  covered = [i for start, length in plain for i in range(start, start + length)]
  assert covered == list(range(total - total % count))


def test_custom_scale_splits():
  data = synthetic(2)
  train = pipeline.host_arrays(data, "train", scales="33-48")
  test = pipeline.host_arrays(data, "test", scales="17-32,49-64")
  assert sorted(set(train["scale"].tolist())) == list(range(33, 49))
  assert sorted(set(test["scale"].tolist())) == list(range(17, 33)) + list(range(49, 65))
  assert len(train["label"]) == 32 and len(test["label"]) == 64
  ds = pipeline.make_dataset(data, "test", scales="17-32,49-64", batch_size=64, shuffle=False)
  assert sorted(next(pipeline.iterate(ds))["scale"].tolist()) == sorted(test["scale"].tolist())


def test_benchmark_reports_throughput(emoji2_path):
  result = pipeline.benchmark(emoji2_path, "train", 4, batch_size=16, seconds=0.3)
  assert result["examples"] > 0 and result["examples_per_second"] > 0
  assert result["batch_size"] == 16 and result["epochs"] >= 1


def test_ensure_emoji_keeps_an_existing_file(emoji2_path):
  before = emoji2_path.stat().st_mtime_ns
  assert pipeline.ensure_emoji(emoji2_path) == emoji2_path
  assert emoji2_path.stat().st_mtime_ns == before


def test_ensure_emoji_generates_a_missing_file(tmp_path, monkeypatch, emoji3):
  from stir_jax.data import emoji  # pylint: disable=g-import-not-at-top
  monkeypatch.setattr(emoji, "EMOJI_NAMES", emoji.EMOJI_NAMES[:1])  # One icon keeps it fast.
  path = pipeline.ensure_emoji(tmp_path / "new" / "emoji.npz", progress=False)
  np.testing.assert_array_equal(stir_file.load_stir(path).imgs, emoji3.imgs[:, :, :1])
