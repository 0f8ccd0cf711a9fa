"""The grain training pipeline: values checked by hand, determinism, resume, host shards."""

import io

import numpy as np
import pytest
from PIL import Image

from poolnet_jax import image as image_lib
from poolnet_jax.data import FolderSource, pipeline

MEAN_BGR = np.array([104.00699, 116.66877, 122.67892], np.float32)


def coded_source(n=12, size=(16, 24)):
  """Example i: red channel = i, green = column index, mask = 255 on the left column."""
  h, w = size
  examples = []
  for i in range(n):
    rgb = np.zeros((h, w, 3), np.uint8)
    rgb[..., 0] = i
    rgb[..., 1] = np.arange(w)[None, :]
    mask = np.zeros((h, w, 1), np.uint8)
    mask[:, 0] = 255
    examples.append({"image": rgb, "mask": mask, "edge": mask, "name": f"ex{i}"})
  return examples


def ids(batch):
  """Example ids in a batch, from the red channel (BGR minus mean: channel 2)."""
  red = batch["image"][..., 0, 0, 2] + MEAN_BGR[2]
  return np.rint(red).astype(int).ravel().tolist()


def test_preprocessing_and_flips_by_hand():
  it = pipeline.train_iterator(coded_source(), mode="native", batch_size=1, num_devices=1,
                               flip=True, seed=3)
  flips = 0
  for _ in range(24):
    batch = next(it)
    assert batch["image"].shape == (1, 1, 16, 24, 3) and batch["image"].dtype == np.float32
    assert batch["label"].shape == (1, 1, 16, 24, 1)
    green = batch["image"][0, 0, 0, :, 1] + MEAN_BGR[1]  # BGR: green stays in the middle
    flipped = green[0] > green[-1]
    flips += flipped
    np.testing.assert_allclose(green, np.arange(24)[::-1] if flipped else np.arange(24), atol=1e-4)
    label_column = 23 if flipped else 0  # the label flips with its image
    assert batch["label"][0, 0, :, label_column, 0].min() == 1.0
    assert batch["label"][0, 0].sum() == 16
  assert 4 < flips < 20


def test_each_epoch_is_a_new_permutation():
  it = pipeline.train_iterator(coded_source(), batch_size=2, num_devices=1, mode="fixed",
                               size=(16, 24), seed=0)
  first = sum((ids(next(it)) for _ in range(6)), [])
  second = sum((ids(next(it)) for _ in range(6)), [])
  assert sorted(first) == sorted(second) == list(range(12))
  assert first != second


def test_fixed_mode_resizes_and_edge_labels_are_thresholded():
  source = coded_source()
  for example in source:
    example["edge"] = np.full_like(example["edge"], 100)  # 0.39 -> 0 after the threshold
    example["edge"][:, :12] = 200  # 0.78 -> 1
  it = pipeline.train_iterator(source, label_key="edge", mode="fixed", size=(8, 12),
                               batch_size=4, num_devices=2, flip=False)
  batch = next(it)
  assert batch["image"].shape == (2, 2, 8, 12, 3)
  assert set(np.unique(batch["label"])) == {0.0, 1.0}
  saliency = next(pipeline.train_iterator(coded_source(), mode="fixed", size=(8, 12),
                                          batch_size=1, num_devices=1, flip=False))
  assert 0 < saliency["label"].min() < 1 or 0 < saliency["label"].max() < 1  # soft, resized


def test_buckets_follow_the_first_image_aspect():
  source = coded_source(4, (30, 40)) + coded_source(4, (40, 30))
  it = pipeline.train_iterator(source, mode="buckets", buckets=((32, 32), (24, 32), (32, 24)),
                               batch_size=2, num_devices=1, flip=False, shuffle=False)
  shapes = [next(it)["image"].shape[2:4] for _ in range(4)]
  assert shapes == [(24, 32), (24, 32), (32, 24), (32, 24)]


def test_resume_from_state_gives_the_same_batches():
  make = lambda: pipeline.train_iterator(coded_source(), mode="native", batch_size=1,
                                         num_devices=1, seed=5)
  it = make()
  for _ in range(7):
    next(it)
  state = it.get_state()
  expected = [next(it) for _ in range(5)]
  resumed = make()
  resumed.set_state(state)
  for want in expected:
    got = next(resumed)
    np.testing.assert_array_equal(got["image"], want["image"])
    np.testing.assert_array_equal(got["label"], want["label"])


def test_two_hosts_split_each_global_batch():
  kwargs = dict(mode="native", batch_size=4, seed=1)
  single = pipeline.train_iterator(coded_source(), num_devices=4, **kwargs)
  hosts = [pipeline.train_iterator(coded_source(), num_devices=2, process_index=p,
                                   process_count=2, **kwargs) for p in range(2)]
  for _ in range(6):
    whole = next(single)
    parts = [next(h) for h in hosts]
    assert parts[0]["image"].shape == parts[1]["image"].shape == (2, 1, 16, 24, 3)
    np.testing.assert_array_equal(
        np.concatenate([p["image"] for p in parts]), whole["image"])
    assert not set(ids(parts[0])) & set(ids(parts[1]))


def test_batch_must_divide_over_devices_and_hosts():
  with pytest.raises(ValueError, match="multiple"):
    pipeline.train_iterator(coded_source(), batch_size=3, num_devices=2)
  with pytest.raises(ValueError, match="mode"):
    next(pipeline.train_iterator(coded_source(), mode="square", num_devices=1))
  with pytest.raises(ValueError, match="empty"):
    pipeline.train_iterator([], num_devices=1)


def test_corrupt_file_is_skipped_not_fatal(tmp_path, caplog):
  (tmp_path / "img").mkdir()
  (tmp_path / "gt").mkdir()
  for i in range(4):
    rgb = np.full((20, 20, 3), 60 * i, np.uint8)
    Image.fromarray(rgb).save(tmp_path / "img" / f"{i}.png")
    Image.fromarray(np.zeros((20, 20), np.uint8)).save(tmp_path / "gt" / f"{i}.png")
  (tmp_path / "img" / "2.png").write_bytes(b"\x89PNG broken")
  source = FolderSource(tmp_path / "img", tmp_path / "gt")
  it = pipeline.train_iterator(source, mode="native", batch_size=1, num_devices=1)
  batches = [next(it) for _ in range(12)]  # three epochs, the bad file met each time
  assert all(b["image"].shape == (1, 1, 20, 20, 3) for b in batches)
  assert "2.png" in caplog.text
