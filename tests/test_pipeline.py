"""The grain training pipeline: values checked by hand or against ops.resize_bilinear (jax).

Examples are coded so a batch tells what it holds: red = example id, green =
column (or a constant), blue = row (or a constant); BGR minus the mean is
undone by hand with the original's mean.
"""

import json

from absl import flags
import numpy as np
import pytest
from PIL import Image
import tensorflow_datasets as tfds

from poolnet_jax import ops
from poolnet_jax.data import FolderSource, pipeline, transforms
from poolnet_jax.train import step as step_lib

MEAN_BGR = np.array([104.00699, 116.66877, 122.67892], np.float32)


def coded(i, h, w, mask=None, constant_gb=None):
  """Example i: R = i, G = column, B = row (or G, B = constant_gb), mask as given or a pattern."""
  rgb = np.zeros((h, w, 3), np.uint8)
  rgb[..., 0] = i
  if constant_gb is None:
    rgb[..., 1] = np.arange(w)[None, :]
    rgb[..., 2] = np.arange(h)[:, None]
  else:
    rgb[..., 1], rgb[..., 2] = constant_gb
  if mask is None:
    mask = np.zeros((h, w, 1), np.uint8)
    mask[:, :3] = 255
    mask[0, :] = 128
  return {"image": rgb, "mask": mask, "edge": mask, "name": f"ex{i}".encode()}


def sized_source(sizes):
  """One example per (H, W) in `sizes`, its id in red and its size in green / blue."""
  return [coded(i, h, w, constant_gb=(h, w)) for i, (h, w) in enumerate(sizes)]


def rgb_of(x):
  """Preprocessed (..., H, W, 3) back to RGB floats."""
  return (x + MEAN_BGR)[..., ::-1]


def ids(batch):
  return np.rint(rgb_of(batch["image"])[..., 0, 0, 0]).astype(int).ravel().tolist()


def device_view(batch):
  """A uint8 batch [B, H, W, C] as the training step sees it (step.device_inputs, bit-equal to
  image.preprocess and label / 255), shaped [B, 1, H, W, C] as one image per device."""
  if "image" not in batch:
    return {task: device_view(part) for task, part in batch.items()}
  assert batch["image"].dtype == np.uint8 and batch["label"].dtype == np.uint8
  image, label = (np.asarray(x) for x in step_lib.device_inputs(batch))
  return {"image": image[:, None], "label": label[:, None]}


def take(it, n):
  return [device_view(next(it)) for _ in range(n)]


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


def _save(path, picture):
  path.parent.mkdir(parents=True, exist_ok=True)
  picture = picture if isinstance(picture, Image.Image) else Image.fromarray(picture)
  picture.save(path)


def test_corrupt_files_are_skipped_logged_and_counted(tmp_path, caplog):
  rng = np.random.default_rng(2)
  for k in range(5):
    _save(tmp_path / f"img/a{k}.jpg", rng.integers(0, 256, (20, 28, 3), np.uint8))
    _save(tmp_path / f"gt/a{k}.png", np.full((20, 28), 255, np.uint8))
  jpeg = (tmp_path / "img/a0.jpg").read_bytes()
  (tmp_path / "img/b_truncated.jpg").write_bytes(jpeg[: len(jpeg) * 2 // 3])
  assert Image.open(tmp_path / "img/b_truncated.jpg").size == (28, 20)  # the header reads
  (tmp_path / "img/c_garbage.jpg").write_bytes(b"not a jpeg")
  _save(tmp_path / "img/d_mismatch.png", np.zeros((20, 28, 3), np.uint8))
  for stem in ("b_truncated", "c_garbage"):
    _save(tmp_path / f"gt/{stem}.png", np.zeros((20, 28), np.uint8))
  _save(tmp_path / "gt/d_mismatch.png", np.zeros((21, 28), np.uint8))
  source = FolderSource(tmp_path / "img", tmp_path / "gt")
  it = pipeline.train_iterator(source, batch_size=1, num_devices=1)
  for batch in take(it, 3 * len(source)):  # three epochs: each bad file met three times
    assert batch["image"].shape == (1, 1, 20, 28, 3) and batch["label"].min() == 1.0
  assert sorted(source.pairs[i][0] for i in it.skipped) == [
    "b_truncated",
    "c_garbage",
    "d_mismatch",
  ]
  for reason in (
    "b_truncated.jpg: cannot decode image",
    "c_garbage.jpg: not an image file",
    "d_mismatch.png: label size 28x21 differs",
  ):
    assert caplog.text.count(reason) == 1  # logged once, however often met
  assert "3 unusable so far" in caplog.text
  caplog.clear()  # Grouping by size reads headers first: the garbage file is left out there.
  grouped = pipeline.train_iterator(source, batch_size=2, num_devices=2)
  assert grouped.info["examples"] == 7 and "leaving out" in caplog.text
  assert all(b["image"].shape == (2, 1, 20, 28, 3) for b in take(grouped, 8))


def test_in_memory_arrays_of_any_layout(caplog):
  rgb = np.random.default_rng(4).integers(0, 256, (5, 7, 3), np.uint8)
  mask = np.full((5, 7), 255, np.uint8)
  source = [
    {"image": rgb[..., 0], "mask": mask},  # grey (H, W)
    {"image": np.dstack([rgb, mask]), "mask": mask[..., None]},  # RGBA
    {"image": rgb.astype(np.uint16) * 257, "mask": mask.astype(np.uint16) * 257},  # 16-bit
    {"image": rgb, "mask": np.dstack([mask, mask * 0, mask * 0])},  # colour mask: channel 0
    {"image": rgb, "mask": mask[:4], "name": b"short_mask"},  # size mismatch: skipped
    {"image": np.zeros((0, 7, 3), np.uint8), "mask": mask[:0], "name": "no_rows"},  # skipped
  ]
  it = pipeline.train_iterator(source, batch_size=1, num_devices=1, flip=False, shuffle=False)
  batches = take(it, 6)
  want = [np.repeat(rgb[..., :1], 3, -1), rgb, rgb, rgb]
  for w, batch in zip(want, batches):
    np.testing.assert_allclose(rgb_of(batch["image"][0, 0]), w, atol=1e-4)
    assert batch["label"].min() == 1.0
  assert sorted(it.skipped) == [4, 5]
  assert "short_mask: mask size 7x4 differs from its image's 7x5" in caplog.text
  assert "no_rows: unsupported image shape (0, 7, 3)" in caplog.text


def test_nothing_loads_is_a_clear_error(tmp_path):
  for k in range(3):
    (tmp_path / f"img/{k}.jpg").parent.mkdir(exist_ok=True)
    (tmp_path / f"img/{k}.jpg").write_bytes(b"junk")
    _save(tmp_path / f"gt/{k}.png", np.zeros((4, 4), np.uint8))
  source = FolderSource(tmp_path / "img", tmp_path / "gt")
  with pytest.raises(RuntimeError, match="no training example loads: 3 tried"):
    next(pipeline.train_iterator(source, batch_size=1, num_devices=1))
  with pytest.raises(ValueError, match="no readable image"):
    pipeline.train_iterator(source, batch_size=2, num_devices=1)


def test_image_and_label_modes_from_files(tmp_path):
  h, w = 6, 8
  rgb = np.random.default_rng(3).integers(0, 256, (h, w, 3), np.uint8)
  ramp = (np.arange(h * w).reshape(h, w) * 5).astype(np.uint8)
  binary = np.zeros((h, w), np.uint8)
  binary[2:5, 3:7] = 1
  palette = Image.fromarray(rgb).convert("P", palette=Image.ADAPTIVE, colors=16)
  palette_mask = Image.frombytes("P", (w, h), binary.tobytes())
  palette_mask.putpalette([0, 0, 0, 255, 255, 255])
  files = {  # stem: (image, mask, expected rgb, expected label)
    "a_grey": (ramp, binary.astype(np.uint16) * 65535, np.repeat(ramp[..., None], 3, -1), binary),
    "b_rgba": (np.dstack([rgb, ramp]), palette_mask, rgb, binary),
    "c_palette": (
      palette,
      np.dstack([binary * 255] * 3 + [ramp]),
      np.asarray(palette.convert("RGB")),
      binary,
    ),
    "d_grey16": (
      ramp.astype(np.uint16) * 257,
      np.zeros((h, w), np.uint8),
      np.repeat(ramp[..., None], 3, -1),
      np.zeros((h, w)),
    ),  # empty mask
  }
  for stem, (image, mask, _, _) in files.items():
    _save(
      tmp_path / f"img/{stem}.png",
      image if isinstance(image, Image.Image) else Image.fromarray(image),
    )
    _save(
      tmp_path / f"gt/{stem}.png",
      mask
      if isinstance(mask, Image.Image)
      else Image.fromarray(mask.astype(np.uint16) if mask.max() > 255 else mask),
    )
  assert Image.open(tmp_path / "img/d_grey16.png").mode.startswith("I")
  assert Image.open(tmp_path / "gt/a_grey.png").mode.startswith("I")
  source = FolderSource(tmp_path / "img", tmp_path / "gt")
  it = pipeline.train_iterator(source, batch_size=1, num_devices=1, flip=False, shuffle=False)
  for (_, _, want_rgb, want_label), batch in zip(files.values(), take(it, 4)):
    np.testing.assert_allclose(rgb_of(batch["image"][0, 0]), want_rgb, atol=1e-4)
    np.testing.assert_array_equal(batch["label"][0, 0, ..., 0], want_label)
  assert not it.skipped
  checked = FolderSource(tmp_path / "img", tmp_path / "gt", validate=True)
  assert len(checked) == 4 and checked.report.empty == ["d_grey16"]


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


def shapes_of(batches):
  """(B, H, W) of each batch as `take` returns them ([B, 1, H, W, C])."""
  return [(b["image"].shape[0],) + b["image"].shape[2:4] for b in batches]


def test_native_multiple_rounds_each_side_never_below_the_minimum():
  sizes = [(100, 150), (37, 61), (9, 30), (21, 40)]
  # By hand: an image whose short side is below the first multiple >= min_size is scaled up
  # to it (aspect kept, as today's scaling to min_size), then each side goes to its nearest
  # multiple (halves up). (9, 30) at min_size 20, multiple 16: (32, round(30 * 32 / 9) = 107)
  # -> (32, 112). multiple 0: today's sizes.
  cases = {
    (0, 16): [(100, 150), (37, 61), (16, 53), (21, 40)],
    (8, 16): [(104, 152), (40, 64), (16, 56), (24, 40)],
    (16, 20): [(96, 144), (32, 64), (32, 112), (32, 64)],
    (32, 16): [(96, 160), (32, 64), (32, 96), (32, 64)],
  }
  for (multiple, min_size), want in cases.items():
    for k, size in enumerate(sizes):
      it = pipeline.train_iterator(
        sized_source([size]),
        batch_size=1,
        num_devices=1,
        min_size=min_size,
        native_multiple=multiple,
      )
      batch = take(it, 1)[0]
      assert batch["image"].shape[2:4] == batch["label"].shape[2:4] == want[k], (multiple, size)
      if multiple:
        assert all(n % multiple == 0 and n >= min_size for n in want[k])
  with pytest.raises(ValueError, match="native_multiple must be an integer >= 0"):
    pipeline.train_iterator(sized_source(sizes), num_devices=1, native_multiple=-8)


def test_native_multiple_at_batch_2_groups_by_the_rounded_size():
  sizes = [(100, 150), (101, 149), (98, 152), (60, 80), (61, 79), (59, 81)]
  # multiple 8: (104, 152) x 2 and (64, 80) x 2 make full steps; (96, 152) and (56, 80)
  # are left over, sorted by aspect (81 / 59 < 152 / 98), and take their middle's (96, 152).
  it = pipeline.train_iterator(
    sized_source(sizes), batch_size=2, num_devices=2, flip=False, native_multiple=8
  )
  assert it.epoch_shapes(0) == [(2, 64, 80), (2, 96, 152), (2, 104, 152)]
  assert sorted(shapes_of(take(it, 3))) == it.epoch_shapes(0)


def test_step_shapes_are_the_shapes_the_batches_have():
  sizes = [(16, 24)] * 3 + [(24, 16)] * 2 + [(20, 20), (18, 26), (13, 30)]
  for kwargs in (
    dict(batch_size=1, num_devices=1, plan_sizes=True, min_size=15),
    dict(batch_size=2, num_devices=2),
    dict(batch_size=2, num_devices=1, process_count=2, process_index=1),
  ):
    it = pipeline.train_iterator(sized_source(sizes), flip=False, seed=3, **kwargs)
    per_epoch = it.steps_per_epoch
    planned = it.planned_steps(0, 2 * per_epoch)  # two epochs: two permutations
    batches = take(it, 2 * per_epoch)
    local = kwargs["batch_size"] // kwargs.get("process_count", 1)
    assert shapes_of(batches) == [(local,) + step[0][1] for step in planned]
    if local == kwargs["batch_size"]:  # one process: its batch holds the planned examples
      assert [ids(b) for b in batches] == [[i for i, _ in step] for step in planned]
    for epoch in (0, 1):
      assert it.epoch_shapes(epoch) == sorted(
        set(shapes_of(batches[epoch * per_epoch : (epoch + 1) * per_epoch]))
      )
    assert it.step_shapes(0, 2 * per_epoch) == sorted(set(shapes_of(batches)))
  assert (1, 15, 35) in pipeline.train_iterator(  # 13x30 scaled up to min_size 15
    sized_source(sizes), batch_size=1, num_devices=1, plan_sizes=True, min_size=15
  ).epoch_shapes(0)


def test_reading_sizes_at_batch_1_keeps_the_order():
  sizes = [(16, 24), (24, 16), (20, 20), (18, 26)] * 2
  make = lambda plan: pipeline.train_iterator(
    sized_source(sizes), batch_size=1, num_devices=1, seed=5, plan_sizes=plan
  )
  want, got = take(make(False), 16), take(make(True), 16)
  for w, g in zip(want, got):
    np.testing.assert_array_equal(w["image"], g["image"])
  with pytest.raises(ValueError, match="plan_sizes=True"):
    make(False).epoch_shapes(0)
  fixed = pipeline.train_iterator(
    sized_source(sizes), mode="fixed", size=(8, 12), batch_size=2, num_devices=1
  )
  assert fixed.epoch_shapes(3) == [(2, 8, 12)]  # no sizes needed


def test_joint_step_shapes_per_task():
  saliency = sized_source([(16, 24), (24, 16), (20, 20)])
  edges = sized_source([(30, 20), (20, 30)])
  make = lambda: pipeline.joint_iterator(
    saliency, edges, batch_size=1, num_devices=1, plan_sizes=True
  )
  it = make()
  steps = take(it, 7)  # past both streams' epoch ends (3 and 2 steps)
  shapes = make().step_shapes(0, 7)
  assert shapes == {
    task: sorted(set(shapes_of([s[task] for s in steps]))) for task in ("edge", "saliency")
  }
  assert shapes == {
    "edge": [(1, 20, 30), (1, 30, 20)],
    "saliency": [(1, 16, 24), (1, 20, 20), (1, 24, 16)],
  }
  assert make().epoch_shapes(0) == shapes
