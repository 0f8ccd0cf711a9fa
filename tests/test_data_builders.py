"""Real-data builders, folder sources, pair lists and bad data, on tiny files made here."""

import io
import logging
import os
import struct
import tarfile
import zipfile
import zlib

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

import poolnet_jax.data  # noqa: F401  (registers the builders)
from poolnet_jax.data import decode
from poolnet_jax.data import files
from poolnet_jax.data.builders.salient_folder import folder_config
from poolnet_jax.data.folder import FolderSource

H, W = 12, 16


@pytest.fixture(autouse=True)
def _logs(caplog):
  caplog.set_level(logging.INFO)


def _rgb(seed, h=H, w=W):
  return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _mask(seed, h=H, w=W):
  rng = np.random.default_rng(seed + 1000)
  return np.where(rng.random((h, w)) > 0.5, 255, 0).astype(np.uint8)


def _save(path, array, **kwargs):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  image = array if isinstance(array, Image.Image) else Image.fromarray(array)
  image.save(path, **kwargs)
  return path


def _pairs(root, image_dir, mask_dir, stems, image_ext=".png"):
  """Writes RGB images and binary masks; returns {stem: (rgb, mask)}."""
  made = {}
  for i, stem in enumerate(stems):
    made[stem] = (_rgb(i), _mask(i))
    _save(os.path.join(root, image_dir, stem + image_ext), made[stem][0])
    _save(os.path.join(root, mask_dir, stem + ".png"), made[stem][1])
  return made


def _zip(archive, root, only=None):
  os.makedirs(os.path.dirname(archive), exist_ok=True)
  with zipfile.ZipFile(archive, "w") as z:
    for folder, _, names in os.walk(root):
      for name in names:
        path = os.path.join(folder, name)
        rel = os.path.relpath(path, root)
        if only is None or rel.startswith(only):
          z.write(path, rel)
  return archive


def _build(name, data_dir, manual_dir, config=None):
  builder = tfds.builder(name, data_dir=data_dir, **({"config": config} if config else {}))
  builder.download_and_prepare(
    download_config=tfds.download.DownloadConfig(manual_dir=os.fspath(manual_dir))
  )
  return builder


def _by_name(builder, split):
  source = builder.as_data_source(split)
  return {source[i]["name"].decode(): source[i] for i in range(len(source))}


def _check(examples, made, label="mask"):
  assert sorted(examples) == sorted(made)
  for stem, (rgb, mask) in made.items():
    np.testing.assert_array_equal(examples[stem]["image"], rgb)
    np.testing.assert_array_equal(examples[stem][label][..., 0], mask)


def test_duts_from_official_archives(tmp_path, caplog):
  src = tmp_path / "src"
  train = _pairs(src, "DUTS-TR/DUTS-TR-Image", "DUTS-TR/DUTS-TR-Mask", ["tr_a", "tr_b", "tr_c"])
  test = _pairs(src, "DUTS-TE/DUTS-TE-Image", "DUTS-TE/DUTS-TE-Mask", ["te_a", "te_b"])
  _zip(tmp_path / "manual/DUTS-TR.zip", src, only="DUTS-TR")
  _zip(tmp_path / "manual/DUTS-TE.zip", src, only="DUTS-TE")
  builder = _build("duts", tmp_path / "data", tmp_path / "manual")
  _check(_by_name(builder, "train"), train)
  _check(_by_name(builder, "test"), test)
  # tfds.data_source serves the same build.
  source = tfds.data_source("duts", data_dir=tmp_path / "data", split="test")
  assert len(source) == 2 and source[0]["mask"].shape == (H, W, 1)
  assert "official set has 10553" in caplog.text and "official set has 5019" in caplog.text


def test_ecssd_from_folders_with_jpeg_images(tmp_path):
  made = _pairs(
    tmp_path / "manual/ECSSD", "images", "ground_truth_mask", ["0001", "0002"], image_ext=".jpg"
  )
  examples = _by_name(_build("ecssd", tmp_path / "data", tmp_path / "manual"), "test")
  assert sorted(examples) == ["0001", "0002"]
  for stem, (_, mask) in made.items():
    path = tmp_path / f"manual/ECSSD/images/{stem}.jpg"
    reference = np.asarray(Image.open(path).convert("RGB"), np.int32)
    assert np.abs(examples[stem]["image"].astype(np.int32) - reference).max() <= 2
    np.testing.assert_array_equal(examples[stem]["mask"][..., 0], mask)


def test_pascal_s_from_salobj_zip(tmp_path):
  src = tmp_path / "src"
  made = _pairs(src, "datasets/imgs/pascal", "datasets/masks/pascal", ["1", "2", "3"])
  _zip(tmp_path / "manual/salObj.zip", src)
  _check(_by_name(_build("pascal_s", tmp_path / "data", tmp_path / "manual"), "test"), made)


def test_pascal_s_from_extracted_salobj_folders(tmp_path):
  made = _pairs(tmp_path / "manual", "datasets/imgs/pascal", "datasets/masks/pascal", ["1", "2"])
  _check(_by_name(_build("pascal_s", tmp_path / "data", tmp_path / "manual"), "test"), made)


def test_dut_omron_with_a_zip_inside_a_zip(tmp_path):
  src = tmp_path / "src"
  made = _pairs(src, "DUT-OMRON-image", "pixelwiseGT-new-PNG", ["im1", "im2"], ".jpg")
  _zip(tmp_path / "manual/DUT-OMRON-image.zip", src, only="DUT-OMRON-image")
  inner = _zip(tmp_path / "inner/DUT-OMRON-gt-pixelwise.zip", src, only="pixelwiseGT")
  with zipfile.ZipFile(tmp_path / "manual/DUT-OMRON-gt-pixelwise.zip.zip", "w") as z:
    z.write(inner, "DUT-OMRON-gt-pixelwise.zip")
  examples = _by_name(_build("dut_omron", tmp_path / "data", tmp_path / "manual"), "test")
  assert sorted(examples) == ["im1", "im2"]
  np.testing.assert_array_equal(examples["im2"]["mask"][..., 0], made["im2"][1])


def test_hku_is_and_tar_archive(tmp_path):
  src = tmp_path / "src"
  made = _pairs(src, "HKU-IS/imgs", "HKU-IS/gt", ["a", "b"])
  os.makedirs(tmp_path / "manual")
  with tarfile.open(tmp_path / "manual/HKU-IS.tar.gz", "w:gz") as t:
    t.add(src / "HKU-IS", arcname="HKU-IS")
  _check(_by_name(_build("hku_is", tmp_path / "data", tmp_path / "manual"), "test"), made)


def test_sod_in_poolnet_layout_with_test_lst(tmp_path):
  """PoolNet's Imgs/ folder: .jpg images and .png masks together, test.lst of image names."""
  made = _pairs(tmp_path / "manual/SOD", "Imgs", "Imgs", ["p1", "p2", "p3"], ".jpg")
  (tmp_path / "manual/SOD/test.lst").write_text("p1.jpg\np3.jpg\n")
  examples = _by_name(_build("sod", tmp_path / "data", tmp_path / "manual"), "test")
  assert sorted(examples) == ["p1", "p3"]  # the list wins over the folder
  np.testing.assert_array_equal(examples["p3"]["mask"][..., 0], made["p3"][1])


def test_duts_train_pair_lst(tmp_path):
  root = tmp_path / "manual/DUTS/DUTS-TR"
  made = _pairs(root, "DUTS-TR-Image", "DUTS-TR-Mask", ["x", "y", "z"])
  (root / "train_pair.lst").write_text(
    "DUTS-TR-Image/x.png DUTS-TR-Mask/x.png\n\n# comment\nDUTS-TR-Image/z.png DUTS-TR-Mask/z.png\n"
  )
  builder = _build("duts", tmp_path / "data", tmp_path / "manual")
  assert list(builder.info.splits) == ["train"]  # no DUTS-TE: built without it
  _check(_by_name(builder, "train"), {k: made[k] for k in ("x", "z")})


def test_bsds_pascal_edges_from_pair_list(tmp_path):
  root = tmp_path / "manual/HED-BSDS_PASCAL"
  soft = np.arange(H * W, dtype=np.uint8).reshape(H, W)  # annotator averages, not binary
  lines = []
  for folder in ("0.0_1_0", "90.0_1_0"):
    _save(root / f"HED-BSDS/train/aug_data/{folder}/100075.jpg", _rgb(1), quality=95)
    _save(root / f"HED-BSDS/train/aug_gt/{folder}/100075.png", soft)
    lines.append(
      f"HED-BSDS/train/aug_data/{folder}/100075.jpg HED-BSDS/train/aug_gt/{folder}/100075.png"
    )
  _save(root / "PASCAL/aug_data/0.0_0/2008_000002.jpg", _rgb(2))
  _save(root / "PASCAL/aug_gt/0.0_0/2008_000002.png", soft)
  lines.append("PASCAL/aug_data/0.0_0/2008_000002.jpg PASCAL/aug_gt/0.0_0/2008_000002.png")
  (root / "bsds_pascal_train_pair.lst").write_text("\n".join(lines) + "\n")
  builder = _build("bsds_pascal_edges", tmp_path / "data", tmp_path / "manual")
  examples = _by_name(builder, "train")
  # Stems repeat across augmentation folders, so names are the listed paths.
  assert sorted(examples) == sorted(line.split()[0][:-4] for line in lines)
  for ex in examples.values():
    assert set(ex) == {"image", "edge", "name"}
    np.testing.assert_array_equal(ex["edge"][..., 0], soft)


def test_salient_folder_builder_by_stem_and_by_list(tmp_path):
  made = _pairs(tmp_path / "mine", "photos", "masks", ["q", "r"])
  config = folder_config("mine", str(tmp_path / "mine/photos"), str(tmp_path / "mine/masks"))
  builder = tfds.builder("salient_folder", config=config, data_dir=tmp_path / "data")
  builder.download_and_prepare()
  _check(_by_name(builder, "train"), made)
  (tmp_path / "mine/pairs.lst").write_text("photos/r.png masks/r.png\n")
  config = folder_config(
    "edges", pair_list=str(tmp_path / "mine/pairs.lst"), label="edge", split="test"
  )
  builder = tfds.builder("salient_folder", config=config, data_dir=tmp_path / "data")
  builder.download_and_prepare()
  _check(_by_name(builder, "test"), {"r": made["r"]}, label="edge")
  reread = tfds.builder_from_directory(tmp_path / "data/salient_folder/edges/1.0.0")
  assert len(reread.as_data_source("test")) == 1


def test_folder_source(tmp_path):
  made = _pairs(tmp_path, "img", "gt", ["k1", "k2", "k3"])
  source = FolderSource(tmp_path / "img", tmp_path / "gt")
  assert len(source) == 3
  ex = source[1]
  assert ex["name"] == "k2" and ex["mask"].shape == (H, W, 1) and ex["mask"].dtype == np.uint8
  np.testing.assert_array_equal(ex["image"], made["k2"][0])
  np.testing.assert_array_equal(ex["mask"][..., 0], made["k2"][1])
  (tmp_path / "list.lst").write_text("img/k3.png gt/k3.png\n")
  listed = FolderSource(pair_list=tmp_path / "list.lst", label="edge")
  assert len(listed) == 1 and listed[0]["edge"].shape == (H, W, 1)
  images_only = FolderSource(tmp_path / "img")
  assert len(images_only) == 3 and set(images_only[0]) == {"image", "name"}


# Bad data.


def _manual_with(tmp_path, extra):
  """ECSSD manual dir with two good pairs plus `extra` {stem: (image, mask)} written as given."""
  made = _pairs(tmp_path / "manual/ECSSD", "images", "ground_truth_mask", ["good1", "good2"])
  for stem, (image, mask) in extra.items():
    for folder, content in (("images", image), ("ground_truth_mask", mask)):
      if content is None:
        continue
      path = tmp_path / f"manual/ECSSD/{folder}/{stem}.png"
      if isinstance(content, bytes):
        path.write_bytes(content)
      else:
        _save(path, content)
  return made


def _png_bytes(array):
  buffer = io.BytesIO()
  Image.fromarray(array).save(buffer, format="PNG")
  return buffer.getvalue()


def test_corrupt_and_mismatched_files_are_skipped_and_reported(tmp_path, caplog):
  truncated = _png_bytes(_rgb(5))[:60]
  made = _manual_with(
    tmp_path,
    {
      "garbage": (b"not an image at all", _mask(1)),
      "truncated": (truncated, _mask(2)),
      "empty_file": (b"", _mask(3)),
      "bad_mask": (_rgb(4), b"\x89PNG broken"),
      "wrong_size": (_rgb(6), _mask(6, h=H + 1)),
      "no_mask": (_rgb(7), None),
      "no_image": (None, _mask(8)),
    },
  )
  builder = _build("ecssd", tmp_path / "data", tmp_path / "manual")
  _check(_by_name(builder, "test"), made)
  report = builder.build_reports["test"]
  assert report.written == 2 and len(report.skipped) == 7
  reasons = dict(report.skipped)
  assert "not an image file" in reasons["garbage"]
  assert "truncated.png: cannot decode image: image file is truncated" in reasons["truncated"]
  assert "empty file" in reasons["empty_file"]
  assert "bad_mask.png" in reasons["bad_mask"]
  assert "differs" in reasons["wrong_size"] and "wrong_size.png" in reasons["wrong_size"]
  assert any("no_mask.png" in what for what in reasons)
  assert any("no_image.png" in what for what in reasons)
  assert "wrote 2 examples, skipped 7" in caplog.text
  assert "skipped garbage" in caplog.text


def _png48(rgb16):
  """A 16-bit-per-channel RGB PNG (PIL cannot write one)."""
  chunk = lambda kind, data: (
    struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
  )
  h, w, _ = rgb16.shape
  rows = b"".join(b"\x00" + row.astype(">u2").tobytes() for row in rgb16)
  return (
    b"\x89PNG\r\n\x1a\n"
    + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0))
    + chunk(b"IDAT", zlib.compress(rows))
    + chunk(b"IEND", b"")
  )


def test_image_modes_are_normalised(tmp_path):
  rgb = _rgb(9)
  grey = rgb[..., 0]
  palette = Image.fromarray(rgb).convert("P", palette=Image.ADAPTIVE, colors=16)
  rgba = np.concatenate([rgb, np.full((H, W, 1), 7, np.uint8)], axis=-1)
  mask16 = _mask(9).astype(np.uint16) * 257  # 0 / 65535
  mask16_small = _mask(10).astype(np.uint16)  # a 16-bit file holding 0 / 255
  made = _manual_with(
    tmp_path,
    {
      "grey": (grey, _mask(1)),
      "rgba": (rgba, _mask(2)),
      "palette": (palette, _mask(3)),
      "deep": (rgb, Image.fromarray(mask16)),
      "deep_small": (rgb, Image.fromarray(mask16_small)),
      "rgb_mask": (rgb, np.stack([_mask(4), _mask(4) // 2, np.zeros((H, W), np.uint8)], -1)),
      "rgb48": (_png48(rgb.astype(np.uint16) * 256 + 100), _mask(5)),  # high bytes: rgb
    },
  )
  assert Image.open(tmp_path / "manual/ECSSD/ground_truth_mask/deep.png").mode.startswith("I")
  examples = _by_name(_build("ecssd", tmp_path / "data", tmp_path / "manual"), "test")
  assert len(examples) == len(made) + 7
  np.testing.assert_array_equal(examples["rgb48"]["image"], rgb)
  np.testing.assert_array_equal(examples["grey"]["image"], np.repeat(grey[..., None], 3, -1))
  np.testing.assert_array_equal(examples["rgba"]["image"], rgb)
  np.testing.assert_array_equal(examples["palette"]["image"], np.asarray(palette.convert("RGB")))
  np.testing.assert_array_equal(examples["deep"]["mask"][..., 0], _mask(9))
  np.testing.assert_array_equal(examples["deep_small"]["mask"][..., 0], _mask(10))
  np.testing.assert_array_equal(examples["rgb_mask"]["mask"][..., 0], _mask(4))


def test_empty_masks_are_kept_and_counted(tmp_path, caplog):
  _manual_with(tmp_path, {"blank": (_rgb(3), np.zeros((H, W), np.uint8))})
  builder = _build("ecssd", tmp_path / "data", tmp_path / "manual")
  examples = _by_name(builder, "test")
  assert not examples["blank"]["mask"].any()
  assert builder.build_reports["test"].empty == ["blank"]
  assert "1 with an all-zero label" in caplog.text


def test_all_bad_is_a_clear_error(tmp_path):
  for stem in ("a", "b"):
    (tmp_path / "manual/SOD/Imgs").mkdir(parents=True, exist_ok=True)
    (tmp_path / f"manual/SOD/Imgs/{stem}.jpg").write_bytes(b"junk")
    _save(tmp_path / f"manual/SOD/GT/{stem}.png", _mask(0))
  with pytest.raises(Exception, match="no usable examples"):
    _build("sod", tmp_path / "data", tmp_path / "manual")


def test_empty_or_missing_places_are_clear_errors(tmp_path):
  (tmp_path / "empty").mkdir()
  (tmp_path / "masks").mkdir()
  (tmp_path / "masks/readme.txt").write_text("no images here")
  with pytest.raises(ValueError, match=f"{tmp_path / 'empty'}: no image files"):
    FolderSource(tmp_path / "empty", tmp_path / "masks")
  _save(tmp_path / "imgs/a.png", _rgb(0))
  with pytest.raises(ValueError, match=f"{tmp_path / 'masks'}: no image files"):
    FolderSource(tmp_path / "imgs", tmp_path / "masks")
  with pytest.raises(ValueError, match="folder not found"):
    FolderSource(tmp_path / "nope", tmp_path / "masks")
  _save(tmp_path / "other/b.png", _mask(0))
  with pytest.raises(ValueError, match="no image/label pairs share a file stem"):
    FolderSource(tmp_path / "imgs", tmp_path / "other")
  config = folder_config("e", str(tmp_path / "empty"), str(tmp_path / "masks"))
  with pytest.raises(ValueError, match="no image files"):
    tfds.builder("salient_folder", config=config, data_dir=tmp_path / "d").download_and_prepare()
  with pytest.raises(AssertionError, match="does not exist or is empty"):
    _build("ecssd", tmp_path / "d", tmp_path / "no_manual")
  (tmp_path / "unrelated").mkdir()
  (tmp_path / "unrelated/notes.txt").write_text("x")
  with pytest.raises(FileNotFoundError, match="ecssd: nothing found under"):
    _build("ecssd", tmp_path / "d", tmp_path / "unrelated")


def test_folder_source_validate_and_lazy_errors(tmp_path, caplog):
  _pairs(tmp_path, "img", "gt", ["ok"])
  (tmp_path / "img/bad.png").write_bytes(b"junk")
  _save(tmp_path / "gt/bad.png", _mask(0))
  lazy = FolderSource(tmp_path / "img", tmp_path / "gt")
  assert len(lazy) == 2
  with pytest.raises(decode.DecodeError, match="bad.png"):
    lazy[0]  # "bad" sorts first
  checked = FolderSource(tmp_path / "img", tmp_path / "gt", validate=True)
  assert len(checked) == 1 and checked[0]["name"] == "ok"
  assert "skipped bad" in caplog.text and "skipped 1" in caplog.text


def test_pair_list_errors_and_resolution(tmp_path):
  (tmp_path / "three.lst").write_text("a.jpg b.png c.png\n")
  with pytest.raises(ValueError, match="three.lst:1"):
    files.read_pair_list(tmp_path / "three.lst")
  (tmp_path / "blank.lst").write_text("\n# nothing\n")
  with pytest.raises(ValueError, match="no entries"):
    files.read_pair_list(tmp_path / "blank.lst")
  _save(tmp_path / "root/img/a.png", _rgb(0))
  (tmp_path / "lists").mkdir()
  (tmp_path / "lists/l.lst").write_text("img/a.png gt/a.png\n")
  ((name, image, label),) = files.read_pair_list(tmp_path / "lists/l.lst", [tmp_path / "root"])
  assert name == "a" and image == os.path.join(tmp_path / "root", "img/a.png")
  assert label == os.path.join(tmp_path / "lists", "gt/a.png")  # missing: kept to be reported


def test_duplicate_stems_are_an_error(tmp_path):
  _save(tmp_path / "img/a.png", _rgb(0))
  _save(tmp_path / "img/a.jpg", _rgb(0))
  _save(tmp_path / "gt/a.png", _mask(0))
  with pytest.raises(ValueError, match="share the stem 'a'"):
    FolderSource(tmp_path / "img", tmp_path / "gt")


def test_decode_rules():
  rgb = _rgb(1)
  cmyk = io.BytesIO()
  Image.fromarray(rgb).convert("CMYK").save(cmyk, format="JPEG")
  assert decode.decode_image(cmyk.getvalue()).shape == (H, W, 3)
  la = Image.fromarray(np.stack([rgb[..., 0], rgb[..., 1]], -1))
  np.testing.assert_array_equal(decode.image_array(la), np.repeat(rgb[..., :1], 3, -1))
  deep = decode.to_uint8(np.array([0, 255, 256, 32768, 65535], np.uint16))
  np.testing.assert_array_equal(deep, [0, 1, 1, 128, 255])
  np.testing.assert_array_equal(decode.to_uint8(np.array([0, 0.5, 1.0])), [0, 128, 255])
  np.testing.assert_array_equal(decode.to_uint8(np.array([0, 200, 300.0])), [0, 200, 255])
  with pytest.raises(decode.DecodeError, match="mask.png: not an image file"):
    decode.decode_label(b"nope", name="mask.png")
  with pytest.raises(decode.DecodeError, match="cannot read file"):
    decode.decode_image("/nonexistent/x.png")


def test_masks_stored_as_0_1_are_scaled_to_0_255_and_named(tmp_path, caplog):
  made = _manual_with(tmp_path, {"small01": (_rgb(3), _mask(3) // 255)})
  builder = _build("ecssd", tmp_path / "data", tmp_path / "manual")
  examples = _by_name(builder, "test")
  np.testing.assert_array_equal(examples["small01"]["mask"][..., 0], _mask(3))
  _check({k: examples[k] for k in made}, made)  # 0/255 masks as they were
  assert builder.build_reports["test"].scaled == ["small01"]
  assert "small01: label stored as 0/1, scaled to 0/255" in caplog.text
  assert "1 labels stored as 0/1 scaled to 0/255 (small01)" in caplog.text
  # salient_folder, by the same code.
  folder_made = _pairs(tmp_path / "mine", "photos", "masks", ["q"])
  _save(tmp_path / "mine/masks/q.png", folder_made["q"][1] // 255)
  config = folder_config("mine01", str(tmp_path / "mine/photos"), str(tmp_path / "mine/masks"))
  built = tfds.builder("salient_folder", config=config, data_dir=tmp_path / "data")
  built.download_and_prepare()
  _check(_by_name(built, "train"), folder_made)


def test_folder_source_reads_0_1_masks_as_0_255(tmp_path, caplog):
  made = _pairs(tmp_path, "img", "gt", ["k1", "k2"])
  _save(tmp_path / "gt/k2.png", made["k2"][1] // 255)
  source = FolderSource(tmp_path / "img", tmp_path / "gt")
  np.testing.assert_array_equal(source[1]["mask"][..., 0], made["k2"][1])
  np.testing.assert_array_equal(source[0]["mask"][..., 0], made["k1"][1])
  assert f"{tmp_path / 'gt/k2.png'}: label stored as 0/1, read as 0/255" in caplog.text
  checked = FolderSource(tmp_path / "img", tmp_path / "gt", validate=True)
  assert checked.report.scaled == ["k2"]
  assert decode.scale_01_mask(np.zeros((2, 2), np.uint8))[1] is False  # all zero: as it is
  assert decode.scale_01_mask(np.array([[0, 2]], np.uint8))[1] is False
