"""The grain training pipeline: values checked by hand or against ops.resize_bilinear (jax).

Examples are coded so a batch tells what it holds: red = example id, green =
column (or a constant), blue = row (or a constant); BGR minus the mean is
undone by hand with the original's mean.
"""

import json

from absl import flags
import numpy as np
import pytest
import tensorflow_datasets as tfds

from poolnet_jax.data import pipeline, transforms
from poolnet_jax.imaging import ops

from coded_examples import MEAN_BGR, coded, ids, rgb_of, sized_source, take


def test_preprocessing_and_flips_by_hand():
  source = [coded(i, 6, 9) for i in range(12)]
  batches = take(pipeline.train_iterator(source, batch_size=1, num_devices=1, seed=3), 24)
  flips = 0
  for batch in batches:
    assert batch["image"].shape == (1, 1, 6, 9, 3) and batch["label"].shape == (1, 1, 6, 9, 1)
    x, y = batch["image"][0, 0], batch["label"][0, 0, ..., 0]
    example = source[ids(batch)[0]]
    flipped = x[0, 0, 1] + MEAN_BGR[1] > 0.5  # green (= column) of the first column
    flips += flipped
    rgb = example["image"][:, ::-1] if flipped else example["image"]
    bgr = np.stack([rgb[..., 2], rgb[..., 1], rgb[..., 0]], -1).astype(np.float32)
    np.testing.assert_allclose(x, bgr - MEAN_BGR, atol=1e-4)
    mask = example["mask"][..., 0] / 255.0
    np.testing.assert_allclose(y, mask[:, ::-1] if flipped else mask, atol=1e-7)
  assert 5 < flips < 19
  assert sorted(sum((ids(b) for b in batches[:12]), [])) == list(range(12))  # one epoch
  assert ids(batches[0]) + ids(batches[1]) != ids(batches[12]) + ids(batches[13])  # reshuffled


@pytest.mark.parametrize("label_key", ["mask", "edge"])
def test_fixed_mode_against_ops(label_key):
  rng = np.random.default_rng(1)
  source = [
    {
      "image": rng.integers(0, 256, (13, 17, 3), np.uint8),
      label_key: rng.choice(np.array([0, 100, 200, 255], np.uint8), (13, 17, 1)),
    }
    for _ in range(4)
  ]
  it = pipeline.train_iterator(
    source,
    label_key=label_key,
    mode="fixed",
    size=(8, 12),
    batch_size=2,
    num_devices=2,
    flip=False,
    shuffle=False,
  )
  batch = take(it, 1)[0]
  assert batch["image"].shape == (2, 1, 8, 12, 3) and batch["label"].shape == (2, 1, 8, 12, 1)
  for k in range(2):  # no shuffle: examples 0 and 1; resized, then rounded to 8 bits
    rgb = np.asarray(ops.resize_bilinear(source[k]["image"][None].astype(np.float32), (8, 12)))
    np.testing.assert_allclose(batch["image"][k, 0], rgb[0, ..., ::-1] - MEAN_BGR, atol=0.5001)
    label = np.asarray(ops.resize_bilinear(source[k][label_key][None] / np.float32(255), (8, 12)))
    if label_key == "edge":  # the original: > 0.5 -> 1, other values kept (ignored by the loss)
      label = np.where(label > 0.5, 1.0, label)
    np.testing.assert_allclose(batch["label"][k, 0], label[0], atol=0.5001 / 255)
  soft = batch["label"][(batch["label"] > 0.01) & (batch["label"] < 0.99)]
  assert soft.size and (label_key == "mask" or soft.max() <= 128 / 255)


def test_epochs_drop_the_remainder_and_reshuffle():
  it = pipeline.train_iterator(
    [coded(i, 4, 4) for i in range(14)], mode="fixed", size=(4, 4), batch_size=4, num_devices=1
  )
  assert it.steps_per_epoch == 3  # 14 // 4: the last 2 of each permutation wait
  epochs = [sum((ids(b) for b in take(it, 3)), []) for _ in range(3)]
  assert all(len(set(e)) == 12 for e in epochs)  # each example at most once per epoch
  assert len({tuple(e) for e in epochs}) == 3


def test_native_groups_steps_by_size():
  sizes = [(16, 24)] * 8 + [(24, 16)] * 4 + [(20, 20)] * 2 + [(18, 24), (16, 22)]
  it = pipeline.train_iterator(
    sized_source(sizes), mode="native", batch_size=4, num_devices=4, flip=False, seed=2
  )
  for _ in range(2):  # two epochs, two permutations
    seen, step_sizes = [], []
    for batch in take(it, 4):
      assert batch["image"].shape[:2] == (4, 1)
      step_size = batch["image"].shape[2:4]
      step_sizes.append(step_size)
      for i, x in zip(ids(batch), rgb_of(batch["image"])[:, 0]):
        seen.append(i)
        if sizes[i] in ((16, 24), (24, 16)):  # common sizes: at their own size, untouched
          assert step_size == sizes[i]
          np.testing.assert_allclose(
            x[..., 1:], np.broadcast_to(sizes[i], x[..., 1:].shape), atol=1e-4
          )
    assert sorted(seen) == list(range(16))
    # The rest, sorted by aspect: 20x20, 20x20, 18x24, 16x22 -> the middle one's size.
    assert sorted(step_sizes) == [(16, 24), (16, 24), (18, 24), (24, 16)]


def test_buckets_take_each_image_to_its_nearest_aspect():
  sizes = [(30, 40), (40, 30), (33, 31), (20, 50)] * 2
  nearest = {(30, 40): (24, 32), (40, 30): (32, 24), (33, 31): (32, 32), (20, 50): (24, 32)}
  buckets = ((32, 32), (24, 32), (32, 24))
  for batch_size in (1, 2):
    it = pipeline.train_iterator(
      sized_source(sizes), mode="buckets", buckets=buckets, batch_size=batch_size, num_devices=1
    )
    for batch in take(it, 8 // batch_size):
      assert all(nearest[sizes[i]] == batch["image"].shape[2:4] for i in ids(batch))


def test_native_scales_small_images_up_to_min_size():
  it = pipeline.train_iterator(sized_source([(10, 20)]), batch_size=1, num_devices=1, min_size=16)
  assert take(it, 1)[0]["image"].shape == (1, 1, 16, 32, 3)


def test_same_seed_same_batches_and_exact_resume():
  sizes = [(8, 12), (12, 8), (8, 12), (10, 10), (8, 12), (12, 8)] * 2
  make = lambda seed=5: pipeline.train_iterator(
    [coded(i, *s) for i, s in enumerate(sizes)],
    mode="native",
    batch_size=2,
    num_devices=2,
    seed=seed,
  )
  first = take(make(), 12)  # two epochs of 6 steps
  middle = make()
  take(middle, 7)
  state = json.loads(json.dumps(middle.get_state()))  # what orbax JsonSave stores
  assert state["step"] == 7
  resumed = make()
  resumed.set_state(state)
  rewound = make()
  take(rewound, 10)
  rewound.set_state({"step": 7})
  for want, *got in zip(first[7:], take(resumed, 5), take(rewound, 5), take(middle, 5)):
    for batch in got:
      np.testing.assert_array_equal(batch["image"], want["image"])
      np.testing.assert_array_equal(batch["label"], want["label"])
  other = take(make(seed=6), 6)
  assert [ids(b) for b in other] != [ids(b) for b in first[:6]]


class CountingSource:
  """A list source that records which examples were read; sizes from a cheap `image_size`."""

  def __init__(self, examples):
    self.examples, self.read = examples, []

  def __len__(self):
    return len(self.examples)

  def __getitem__(self, index):
    self.read.append(index)
    return self.examples[index]

  def image_size(self, index):
    return self.examples[index]["image"].shape[:2]


def test_two_processes_read_disjoint_shards_with_one_shape_per_step():
  sizes = [(8, 12)] * 6 + [(12, 8)] * 6 + [(10, 10), (9, 13), (13, 9), (8, 8)]
  kwargs = dict(mode="native", batch_size=4, seed=1, read_threads=0, prefetch=0)
  single = pipeline.train_iterator(sized_source(sizes), num_devices=2, **kwargs)
  sources = [CountingSource(sized_source(sizes)) for _ in range(2)]
  hosts = [
    pipeline.train_iterator(s, num_devices=1, process_index=p, process_count=2, **kwargs)
    for p, s in enumerate(sources)
  ]
  epoch = []
  for _ in range(4):
    whole, parts = take(single, 1)[0], [take(h, 1)[0] for h in hosts]
    assert parts[0]["image"].shape == parts[1]["image"].shape == (2, 1) + whole["image"].shape[2:]
    assert not set(ids(parts[0])) & set(ids(parts[1]))
    assert sorted(ids(parts[0]) + ids(parts[1])) == sorted(ids(whole))
    epoch += ids(parts[0]) + ids(parts[1])
  assert sorted(epoch) == list(range(16))
  assert not set(sources[0].read) & set(sources[1].read)  # each decoded only its shard
  assert sorted(sources[0].read + sources[1].read) == list(range(16))


def test_bad_arguments_are_clear_errors():
  source = [coded(i, 4, 4) for i in range(4)]
  with pytest.raises(ValueError, match="multiple of the 2 local devices x 1 processes"):
    pipeline.train_iterator(source, batch_size=3, num_devices=2)
  with pytest.raises(ValueError, match="mode must be one of"):
    pipeline.train_iterator(source, mode="square", num_devices=1)
  with pytest.raises(ValueError, match="is empty"):
    pipeline.train_iterator([], num_devices=1)
  with pytest.raises(ValueError, match="exceeds the 4 training examples"):
    pipeline.train_iterator(source, batch_size=8, num_devices=1)
  with pytest.raises(ValueError, match="process_index 2"):
    pipeline.train_iterator(source, num_devices=1, process_index=2, process_count=2)
  images_only = [{"image": e["image"]} for e in source]
  with pytest.raises(pipeline.MissingLabelError, match="no 'mask' label"):
    next(pipeline.train_iterator(images_only, num_devices=1))


def test_joint_iterator_flips_saliency_only_and_resumes():
  saliency = [coded(i, 6, 9) for i in range(8)]
  edges = [
    coded(i, 6, 9, mask=np.full((6, 9, 1), v, np.uint8))
    for i, v in enumerate([0, 100, 200, 255] * 2)
  ]
  make = lambda: pipeline.joint_iterator(saliency, edges, batch_size=1, num_devices=1, seed=4)
  it = make()
  steps = take(it, 16)
  state = json.loads(json.dumps(it.get_state()))
  later = take(it, 3)
  saliency_flips = 0
  for step in steps:
    assert set(step) == {"saliency", "edge"}
    saliency_flips += rgb_of(step["saliency"]["image"])[0, 0, 0, 0, 1] > 0.5
    assert rgb_of(step["edge"]["image"])[0, 0, 0, 0, 1] < 0.5  # never flipped
    value = edges[ids(step["edge"])[0]]["edge"][0, 0, 0] / np.float32(255)
    np.testing.assert_array_equal(step["edge"]["label"], 1.0 if value > 0.5 else value)
  assert 0 < saliency_flips < 16
  resumed = make()
  resumed.set_state(state)
  for want, got in zip(later, take(resumed, 3)):
    for kind in ("saliency", "edge"):
      np.testing.assert_array_equal(got[kind]["image"], want[kind]["image"])


def test_worker_processes_give_the_same_batches():
  if not flags.FLAGS.is_parsed():  # grain's workers read absl flags; train.py parses them
    flags.FLAGS.mark_as_parsed()
  source = [coded(i, 6, 9) for i in range(8)]
  make = lambda workers: pipeline.train_iterator(
    source, batch_size=2, num_devices=1, worker_count=workers, seed=7
  )
  want = take(make(0), 5)
  it = make(2)
  try:
    got = take(it, 3)
    it.set_state({"step": 4})
    got += take(it, 1)
  finally:
    it.close()
  for w, g in zip(want[:3] + want[4:], got):
    np.testing.assert_array_equal(np.asarray(g["image"]), w["image"])


@pytest.fixture(scope="module")
def tiny_train(tmp_path_factory):
  import poolnet_jax.data  # noqa: F401  (registers the builders)

  data_dir = tmp_path_factory.mktemp("tfds")
  tfds.builder("synthetic_salient/tiny", data_dir=data_dir).download_and_prepare()
  return tfds.data_source("synthetic_salient/tiny", data_dir=data_dir, split="train")


def test_synthetic_tiny_through_tfds(tiny_train):
  decoded = [tiny_train[i] for i in range(len(tiny_train))]
  read = transforms.SizeReader(tiny_train)  # image headers only
  assert [read(i) for i in range(len(decoded))] == [e["image"].shape[:2] for e in decoded]
  first = take(
    pipeline.train_iterator(tiny_train, batch_size=1, num_devices=1, flip=False, shuffle=False), 1
  )[0]
  np.testing.assert_allclose(rgb_of(first["image"][0, 0]), decoded[0]["image"], atol=1e-4)
  np.testing.assert_array_equal(first["label"][0, 0], decoded[0]["mask"] / np.float32(255))
  buckets = ((64, 64), (56, 72), (72, 56))
  it = pipeline.train_iterator(
    tiny_train, label_key="edge", mode="buckets", buckets=buckets, batch_size=4, num_devices=2
  )
  for batch in take(it, 4):
    assert batch["image"].shape[:2] == (4, 1) and batch["image"].shape[2:4] in buckets
    assert batch["label"].max() == 1.0
