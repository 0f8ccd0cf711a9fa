"""The pipeline over image and mask files and in-memory arrays: FolderSource's layouts and
label modes, corrupt files skipped and counted, nothing loadable a clear error."""

import numpy as np
import pytest
from PIL import Image

from poolnet_jax.data import FolderSource, pipeline

from coded_examples import rgb_of, take


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
