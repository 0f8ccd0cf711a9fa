"""The procedural salient scenes and the synthetic_salient TFDS builder."""

import io
import logging

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

import poolnet_jax.data  # noqa: F401  (registers the builders)
from poolnet_jax.data import drawing
from poolnet_jax.data import synthetic
from poolnet_jax.data.builders import synthetic_salient

LONG_SIDE = (96, 128)


def _scene(seed, index, split_id=0, long_side=LONG_SIDE):
  rng = synthetic.scene_rng(seed, split_id, index)
  return synthetic.make_scene(rng, *synthetic.sample_size(rng, long_side))


@pytest.fixture(scope="module")
def scenes():
  return [_scene(11, i) for i in range(24)]


def _boundary(labels):
  """Pixels with a 4-neighbour of another label (both sides), computed with np.diff."""
  out = np.zeros(labels.shape, bool)
  dy = np.diff(labels, axis=0) != 0
  dx = np.diff(labels, axis=1) != 0
  out[1:] |= dy
  out[:-1] |= dy
  out[:, 1:] |= dx
  out[:, :-1] |= dx
  return out


def test_same_seed_same_bytes_other_seed_other_scene():
  a = synthetic_salient.encoded_example(3, 0, 7, LONG_SIDE)
  b = synthetic_salient.encoded_example(3, 0, 7, LONG_SIDE)
  assert a == b
  other_seed = synthetic_salient.encoded_example(4, 0, 7, LONG_SIDE)
  other_split = synthetic_salient.encoded_example(3, 1, 7, LONG_SIDE)
  assert other_seed["image"] != a["image"] and other_split["image"] != a["image"]
  # Decodes to the arrays the generator made.
  scene = _scene(3, 7)
  np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(a["image"]))), scene.image)
  np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(a["mask"]))), scene.mask[..., 0])


def test_types_and_binary_labels(scenes):
  for s in scenes:
    h, w = s.image.shape[:2]
    assert s.image.dtype == s.mask.dtype == s.edge.dtype == np.uint8
    assert s.image.shape == (h, w, 3) and s.mask.shape == s.edge.shape == (h, w, 1)
    assert set(np.unique(s.mask)) <= {0, 255} and set(np.unique(s.edge)) <= {0, 255}
    assert 0.005 < (s.mask > 0).mean() < 0.7


def test_varied_sizes(scenes):
  sizes = {s.image.shape[:2] for s in scenes}
  assert len(sizes) >= 8
  assert any(h > w for h, w in sizes) and any(h < w for h, w in sizes)
  assert all(LONG_SIDE[0] <= max(h, w) <= LONG_SIDE[1] for h, w in sizes)
  big = [_scene(0, i, long_side=(320, 400)).image.shape[:2] for i in range(3)]
  assert all(320 <= max(h, w) <= 400 and min(h, w) >= 200 for h, w in big)


def test_masks_follow_the_objects_exactly(scenes):
  """The colour jumps across the mask boundary, not one pixel inside it."""
  for s in scenes:
    image, mask = s.image.astype(np.int32), s.mask[..., 0] > 0
    jump = np.abs(np.diff(image, axis=1)).sum(-1)  # between (y, x) and (y, x + 1)
    across = mask[:, 1:] != mask[:, :-1]
    inside = mask[:, 1:] & mask[:, :-1]
    one_in = inside & (np.roll(across, 1, axis=1) | np.roll(across, -1, axis=1))
    assert np.median(jump[across]) >= 60
    if one_in.any():
      assert np.median(jump[one_in]) <= 0.5 * np.median(jump[across])
    # Salient objects keep clear of the border.
    assert not (mask[0].any() or mask[-1].any() or mask[:, 0].any() or mask[:, -1].any())


def test_edges_are_contours(scenes):
  with_background_contours = 0
  for s in scenes:
    edge, mask = s.edge[..., 0] > 0, s.mask[..., 0] > 0
    region_boundary = _boundary(s.regions)
    mask_boundary = _boundary(mask.astype(np.int32))
    assert not (edge & ~region_boundary).any(), "edge pixels off every region boundary"
    inner_mask_boundary = mask_boundary & mask
    assert not (inner_mask_boundary & ~edge).any(), "mask boundary pixel without an edge"
    # Every mask boundary pixel (either side) is within one pixel of an edge pixel.
    near = np.zeros_like(edge)
    padded = np.pad(edge, 1)
    for dy in (0, 1, 2):
      for dx in (0, 1, 2):
        near |= padded[dy : dy + edge.shape[0], dx : dx + edge.shape[1]]
    assert not (mask_boundary & ~near).any()
    # Thin: few edge pixels have all 8 neighbours on an edge (strokes are <= 3 px).
    full = np.ones_like(edge)
    for dy in (0, 1, 2):
      for dx in (0, 1, 2):
        full &= padded[dy : dy + edge.shape[0], dx : dx + edge.shape[1]]
    assert full.sum() <= 0.1 * edge.sum()
    with_background_contours += (edge & ~mask_boundary).sum() > 20
  assert with_background_contours >= 0.8 * len(scenes)


def test_shapes_fit_their_radius():
  rng = np.random.default_rng(0)
  for kind in drawing.SHAPES:
    for r in (6, 20):
      shape = drawing.make_shape(rng, kind, r)
      assert shape.any() and max(shape.shape) <= 2 * r + 1, kind
      assert shape[0].any() and shape[-1].any() and shape[:, 0].any() and shape[:, -1].any()
  with pytest.raises(ValueError, match="unknown shape"):
    drawing.make_shape(rng, "cube", 5)


def _decoded(example):
  return {k: np.asarray(Image.open(io.BytesIO(v))) for k, v in example.items()}


@pytest.mark.parametrize("workers", [1, 2])
def test_builder_round_trip(tmp_path, workers):
  """Built and served without TensorFlow; every example equals its direct drawing."""
  config = synthetic_salient.synthetic_config(
    "t",
    num_train=20 if workers > 1 else 5,
    num_validation=2,
    num_test=3,
    long_side=(40, 56),
    seed=9,
  )
  builder = tfds.builder("synthetic_salient", config=config, data_dir=tmp_path, workers=workers)
  builder.download_and_prepare()
  assert builder.info.file_format.value == "array_record"
  for split, split_id, count in (
    ("train", 0, config.num_train),
    ("validation", 1, 2),
    ("test", 2, 3),
  ):
    source = tfds.data_source(
      "synthetic_salient", data_dir=tmp_path, split=split, builder_kwargs={"config": config}
    )
    assert len(source) == count
    for i in range(len(source)):
      ex = source[i]
      name = ex["name"].decode()
      index = int(name.rsplit("_", 1)[1])
      assert name.startswith(split)
      h, w = ex["image"].shape[:2]
      assert ex["image"].shape == (h, w, 3) and ex["image"].dtype == np.uint8
      assert ex["mask"].shape == ex["edge"].shape == (h, w, 1) and ex["mask"].dtype == np.uint8
      want = _decoded(synthetic_salient.encoded_example(9, split_id, index, (40, 56)))
      np.testing.assert_array_equal(ex["image"], want["image"])
      np.testing.assert_array_equal(ex["mask"][..., 0], want["mask"])
      np.testing.assert_array_equal(ex["edge"][..., 0], want["edge"])


def test_registered_configs(tmp_path):
  assert tfds.builder("synthetic_salient", data_dir=tmp_path).builder_config.name == "default"
  tfds.builder("synthetic_salient/tiny", data_dir=tmp_path).download_and_prepare()
  source = tfds.data_source("synthetic_salient/tiny", data_dir=tmp_path, split="validation")
  assert len(source) == 8 and source[0]["edge"].shape[-1] == 1
  cls = tfds.builder_cls("synthetic_salient")
  configs = {c.name: c for c in cls.BUILDER_CONFIGS}
  assert {"default", "small", "tiny"} <= set(configs)
  assert configs["default"].long_side == (320, 400) and configs["default"].num_train >= 1000
  assert max(configs["small"].long_side) <= 160


def test_building_on_first_use_logs_no_missing_dataset_info(tmp_path, caplog):
  """tfds warns that an unbuilt dataset's version folder has no dataset_info.json at every
  look (7 console lines before the demo's build): load_dataset keeps them off the log."""
  from poolnet_jax.data import datasets  # pylint: disable=import-outside-toplevel

  caplog.set_level(logging.INFO)
  source = datasets.load_dataset("synthetic_salient/tiny:validation", data_dir=tmp_path)
  assert len(source) == 8
  messages = [r.getMessage() for r in caplog.records]
  assert any("building TFDS dataset synthetic_salient/tiny" in m for m in messages)
  assert not [m for m in messages if "dataset_info.json" in m]
