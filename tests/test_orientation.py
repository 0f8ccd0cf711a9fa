"""EXIF orientation: phone photos (stored turned, with an Orientation tag) are read upright by
decoding, header sizes, the folder source, the builders and predict."""

import io
import struct
import zlib

import numpy as np
from PIL import Image, ImageOps
import pytest
import tensorflow_datasets as tfds

import poolnet_jax.data  # noqa: F401  (registers the builders)
from poolnet_jax.cli import predict
from poolnet_jax.data import decode, transforms
from poolnet_jax.data.builders.salient_folder import folder_config
from poolnet_jax.data.folder import FolderSource
from image_files import STORED, read_png, save_png, save_turned, smooth_rgb

UPRIGHT = (30, 44)  # (H, W) as shown


def _mask(height, width):
  mask = np.zeros((height, width), np.uint8)
  mask[height // 5 : height // 2, width // 8 : width // 3] = 255  # off-centre: the turn shows
  return mask


def _close(decoded, upright, jpeg=True):
  """Equal to `upright` (within JPEG's error), and not merely because the picture is even."""
  assert decoded.shape == upright.shape
  difference = np.abs(decoded.astype(int) - upright).mean()
  assert difference < (4 if jpeg else 1e-9), difference
  assert np.abs(decoded.astype(int) - upright[::-1, ::-1]).mean() > 20


def _chunk(kind, data):
  return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_decode_and_header_size_are_upright(tmp_path, orientation):
  upright = smooth_rgb(*UPRIGHT)
  jpeg = save_turned(tmp_path / "photo.jpg", upright, orientation, quality=95)
  png = save_turned(tmp_path / "photo.png", upright, orientation)
  for path, lossy in ((jpeg, True), (png, False)):
    assert decode.image_size(path) == UPRIGHT, path
    _close(decode.decode_image(path), upright, jpeg=lossy)
    _close(decode.decode_image(path.read_bytes()), upright, jpeg=lossy)
  mask = _mask(*UPRIGHT)
  save_turned(tmp_path / "mask.png", mask, orientation)
  np.testing.assert_array_equal(decode.decode_label(tmp_path / "mask.png")[..., 0], mask)
  assert decode.image_size(tmp_path / "mask.png") == UPRIGHT
  # The pair's bytes (what a builder stores, decoded without EXIF by TFDS) are upright.
  image_bytes, label_bytes, label = decode.load_pair(jpeg, tmp_path / "mask.png")
  _close(np.asarray(Image.open(io.BytesIO(image_bytes))), upright)
  np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(label_bytes))), mask)
  np.testing.assert_array_equal(label[..., 0], mask)


def test_png_orientation_past_the_pixels_and_a_label_drawn_on_stored_pixels(tmp_path):
  upright = smooth_rgb(*UPRIGHT, seed=1)
  buffer = io.BytesIO()
  Image.fromarray(np.ascontiguousarray(STORED[6](upright))).save(buffer, "PNG")
  exif = Image.Exif()
  exif[0x0112] = 6
  data = buffer.getvalue()
  late = tmp_path / "late.png"  # eXIf after IDAT: Pillow sees it only once the pixels are read
  late.write_bytes(data[:-12] + _chunk(b"eXIf", exif.tobytes()) + data[-12:])
  assert "exif" not in Image.open(late).info
  assert decode.image_size(late) == UPRIGHT
  _close(decode.decode_image(late), upright, jpeg=False)
  # A mask drawn on the stored (unturned) pixels no longer fits: the error says why.
  save_png(tmp_path / "stored_mask.png", np.ascontiguousarray(STORED[6](_mask(*UPRIGHT))))
  with pytest.raises(decode.DecodeError, match="turned by 90 degrees.*EXIF orientation"):
    decode.load_pair(late, tmp_path / "stored_mask.png")


def _photos(root):
  """img/a.jpg (tag 6) with an upright mask, img/b.jpg (tag 8) with a mask that carries the
  same tag, img/c.png upright: {stem: (upright rgb, upright mask)}."""
  made = {}
  for index, (stem, orientation) in enumerate([("a", 6), ("b", 8), ("c", None)]):
    size = (UPRIGHT[0] + index, UPRIGHT[1])
    rgb, mask = smooth_rgb(*size, seed=index), _mask(*size)
    made[stem] = (rgb, mask)
    if orientation is None:
      save_png(root / "img" / f"{stem}.png", rgb)
    else:
      save_turned(root / "img" / f"{stem}.jpg", rgb, orientation, quality=95)
    if stem == "b":
      save_turned(root / "gt" / f"{stem}.png", mask, orientation)
    else:
      save_png(root / "gt" / f"{stem}.png", mask)
  return made


def test_folder_source_yields_upright_pairs_and_sizes(tmp_path):
  made = _photos(tmp_path)
  for validate in (False, True):
    source = FolderSource(tmp_path / "img", tmp_path / "gt", validate=validate)
    assert [name for name, _, _ in source.pairs] == ["a", "b", "c"]
    sizes = transforms.SizeReader(source)
    for index, (rgb, mask) in enumerate(made.values()):
      example = source[index]
      _close(example["image"], rgb, jpeg=index < 2)
      np.testing.assert_array_equal(example["mask"][..., 0], mask)
      assert source.image_size(index) == sizes(index) == rgb.shape[:2]


def test_salient_folder_builder_stores_upright_examples(tmp_path):
  made = _photos(tmp_path / "mine")
  config = folder_config("phones", str(tmp_path / "mine/img"), str(tmp_path / "mine/gt"))
  builder = tfds.builder("salient_folder", config=config, data_dir=tmp_path / "data")
  builder.download_and_prepare()
  assert builder.build_reports["train"].written == 3
  source = builder.as_data_source("train")
  sizes = transforms.SizeReader(source)
  for index in range(len(source)):
    example = source[index]
    stem = example["name"].decode()
    rgb, mask = made[stem]
    _close(example["image"], rgb, jpeg=stem != "c")
    np.testing.assert_array_equal(example["mask"][..., 0], mask)
    assert sizes(index) == rgb.shape[:2], stem


def test_predict_writes_upright_maps_cutouts_and_overlays(tiny_saved, tmp_path, capsys):
  _, _, directory = tiny_saved
  upright = smooth_rgb(121, 133, seed=3)
  photo = save_turned(tmp_path / "in" / "photo.jpg", upright, 6, quality=95)
  # The same pixels as a plain upright file: the network must see exactly these.
  shown = np.asarray(ImageOps.exif_transpose(Image.open(photo)).convert("RGB"))
  _close(shown, upright)
  save_png(tmp_path / "in" / "plain.png", shown)
  output = tmp_path / "maps"

  code = predict.main(
    ["predict", f"--checkpoint={directory}", str(tmp_path / "in"), f"--output={output}"]
    + ["--cutout", "--overlay"]
  )

  assert code == 0, capsys.readouterr().err
  saliency = read_png(output / "photo.png")
  assert saliency.shape == (121, 133)
  np.testing.assert_array_equal(saliency, read_png(output / "plain.png"))
  cutout = read_png(output / "photo_cutout.png")
  assert cutout.shape == (121, 133, 4)
  np.testing.assert_array_equal(cutout[..., :3], shown)
  np.testing.assert_array_equal(cutout[..., 3], saliency)
  assert read_png(output / "photo_overlay.png").shape == (121, 133, 3)
