"""Robust decoding of images and label maps (masks, edge maps) from files or bytes.

One place for the rules, shared by the TFDS builders, the folder source and
the grain pipeline:

- images become uint8 RGB (H, W, 3): grey is repeated, alpha is dropped,
  palettes are expanded, CMYK / YCbCr are converted;
- labels become uint8 (H, W, 1): the largest colour channel of a colour label
  (grey stored as RGB stays itself), palettes expanded first, alpha dropped;
- more than 8 bits per sample (16-bit PNG, 32-bit int, float) are scaled to
  8 bits: integers whose maximum exceeds 255 by 255 / 65535 (by 255 / max
  past 65535), floats in [0, 1] by 255, other floats clipped to [0, 255];
- anything unreadable raises `DecodeError` naming the file;
- masks stored as 0/1 (maximum 1) are the 0/255 convention written small:
  `scale_01_mask` detects and scales them (the builders, the folder source and
  the metrics use it, each warning with the files' names).

EXIF orientation is applied, to images and labels alike: each file is turned
upright by its own Orientation tag (Pillow's `ImageOps.exif_transpose`), as
viewers and annotation tools show it, so a label must match its image as
displayed; `image_size` reports the upright size from the header. A file whose
tag cannot be read is used as stored.
"""

import io
import os
import struct

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

ORIENTATION = 0x0112  # the EXIF Orientation tag
PNG_TEXT_CHUNKS = (b"eXIf", b"tEXt", b"zTXt", b"iTXt")  # where a PNG may carry EXIF or XMP
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".ppm", ".pgm", ".webp")


class DecodeError(ValueError):
  """A file that cannot be used, with the file named in the message."""


def read_bytes(path):
  try:
    with open(path, "rb") as f:
      return f.read()
  except OSError as e:
    raise DecodeError(f"{path}: cannot read file: {e.strerror or e}") from e


def open_image(data, name="<bytes>"):
  """Fully decoded PIL image from bytes, turned upright by its EXIF orientation; DecodeError
  naming `name` if impossible."""
  return _open(data, name)[0]


def orientation(image):
  """The EXIF Orientation (1-8, 1: upright) of an opened PIL image; 1 if absent or unreadable."""
  return _orientation(image.getexif)


def _orientation(read_exif):
  try:
    value = read_exif().get(ORIENTATION, 1)
  except Exception:  # malformed EXIF: the file is used as stored
    return 1
  return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _open(data, name):
  """(upright PIL image, the EXIF orientation it was stored with)."""
  if not data:
    raise DecodeError(f"{name}: empty file")
  try:
    image = Image.open(io.BytesIO(data))
    image.load()
  except UnidentifiedImageError as e:
    raise DecodeError(f"{name}: not an image file (format not recognised)") from e
  except Exception as e:  # PIL raises many types for corrupt data.
    raise DecodeError(f"{name}: cannot decode image: {e}") from e
  if image.width == 0 or image.height == 0:
    raise DecodeError(f"{name}: image has zero size {image.size}")
  turn = orientation(image)
  if turn != 1:
    try:
      ImageOps.exif_transpose(image, in_place=True)
    except Exception as e:  # PIL raises many types for odd EXIF data.
      raise DecodeError(f"{name}: cannot apply its EXIF orientation {turn}: {e}") from e
  return image, turn


def to_uint8(array):
  """Scales deeper-than-8-bit samples to uint8 (see the module docstring)."""
  array = np.asarray(array)
  if array.dtype == np.uint8:
    return array
  if array.dtype == bool:
    return array.astype(np.uint8) * 255
  if np.issubdtype(array.dtype, np.integer):
    top = int(array.max()) if array.size else 0
    if top <= 255:
      return np.clip(array, 0, 255).astype(np.uint8)
    scale = 255.0 / max(top, 65535)
    return np.clip(np.rint(array.astype(np.float64) * scale), 0, 255).astype(np.uint8)
  array = np.nan_to_num(array.astype(np.float64))
  if array.size and array.min() >= 0 and array.max() <= 1:
    array = array * 255
  return np.clip(np.rint(array), 0, 255).astype(np.uint8)


def scale_01_mask(mask):
  """(mask, scaled): a uint8 mask whose values are only 0 and 1 (max 1) becomes 0 / 255.

  Any other mask, an all-zero one included, comes back as it is with scaled False.
  """
  mask = np.asarray(mask)
  if mask.dtype != np.uint8 or not mask.size or mask.max() != 1:
    return mask, False
  return mask * np.uint8(255), True


def _plain(image):
  """PIL image -> numpy: palettes expanded, wide modes kept wide."""
  if image.mode == "P":
    image = image.convert("RGBA" if "transparency" in image.info else "RGB")
  elif image.mode == "PA":
    image = image.convert("RGBA")
  elif image.mode in ("CMYK", "YCbCr", "LAB", "HSV"):
    image = image.convert("RGB")
  elif image.mode == "1":
    image = image.convert("L")
  elif image.mode.startswith("I;16"):
    return np.asarray(image).astype(np.uint16)
  return np.asarray(image)


def image_array(image, name="<bytes>"):
  """PIL image -> uint8 RGB (H, W, 3)."""
  array = to_uint8(_plain(image))
  if array.ndim == 2:
    return np.repeat(array[..., None], 3, axis=-1)
  if array.ndim == 3 and array.shape[-1] in (2, 4):  # LA, RGBA: drop alpha
    array = array[..., :-1]
  if array.ndim == 3 and array.shape[-1] == 1:
    return np.repeat(array, 3, axis=-1)
  if array.ndim != 3 or array.shape[-1] != 3:
    raise DecodeError(f"{name}: unsupported image layout {array.shape} (mode {image.mode})")
  return np.ascontiguousarray(array)


def label_array(image, name="<bytes>"):
  """PIL image -> uint8 (H, W, 1); colour labels keep their largest channel."""
  array = to_uint8(_plain(image))
  if array.ndim == 3 and array.shape[-1] in (2, 4):  # LA, RGBA: drop alpha
    array = array[..., :-1]
  if array.ndim == 3:
    array = array.max(axis=-1)
  if array.ndim != 2:
    raise DecodeError(f"{name}: unsupported label layout {array.shape} (mode {image.mode})")
  return np.ascontiguousarray(array[..., None])


def _source(data_or_path, name):
  if isinstance(data_or_path, (bytes, bytearray, memoryview)):
    return bytes(data_or_path), name or "<bytes>"
  path = os.fspath(data_or_path)
  return read_bytes(path), name or path


def decode_image(data_or_path, name=None):
  """File path or encoded bytes -> uint8 RGB (H, W, 3)."""
  data, name = _source(data_or_path, name)
  return image_array(open_image(data, name), name)


def decode_label(data_or_path, name=None):
  """File path or encoded bytes -> uint8 (H, W, 1) mask or edge map."""
  data, name = _source(data_or_path, name)
  return label_array(open_image(data, name), name)


def image_size(path):
  """(H, W) of an image file as decoded (turned upright by its EXIF orientation: sides
  swapped for orientations 5-8), read from its header without decoding the pixels."""
  try:
    with Image.open(os.fspath(path)) as image:
      width, height = image.size
      turn = _header_orientation(image, path)
  except FileNotFoundError as e:
    raise DecodeError(f"{path}: cannot read file: {e.strerror or e}") from e
  except Exception as e:  # PIL raises many types for unreadable headers.
    raise DecodeError(f"{path}: not a readable image file: {e}") from e
  if width == 0 or height == 0:
    raise DecodeError(f"{path}: image has zero size {(width, height)}")
  return (width, height) if turn >= 5 else (height, width)  # TIFF: turn is 1 (see below)


def _header_orientation(image, path):
  """`orientation` of an opened image without decoding it where the format allows.

  Pillow's TIFF reader turns a TIFF itself, its size at opening included: 1. Pillow reads a
  PNG's metadata past its pixels only by decoding them: the chunks are walked first, and only
  a PNG with metadata there is decoded.
  """
  if image.format == "TIFF":
    return 1
  if image.format != "PNG" or "exif" in image.info:
    return orientation(image)
  if _png_text_after_pixels(path):
    image.load()
    return orientation(image)
  return _orientation(lambda: Image.Image.getexif(image))  # the header's chunks only


def _png_text_after_pixels(path):
  """Whether a PNG file has a chunk that may hold EXIF or XMP after its first IDAT."""
  with open(os.fspath(path), "rb", buffering=0) as f:
    f.seek(8)
    pixels = False
    while len(head := f.read(8)) == 8:
      length, kind = struct.unpack(">I4s", head)
      if kind == b"IEND":
        break
      pixels = pixels or kind == b"IDAT"
      if pixels and kind in PNG_TEXT_CHUNKS:
        return True
      f.seek(length + 4, os.SEEK_CUR)
  return False


def encode_png(array):
  """uint8 (H, W), (H, W, 1) or (H, W, 3) -> PNG bytes (fast compression)."""
  array = np.asarray(array)
  if array.ndim == 3 and array.shape[-1] == 1:
    array = array[..., 0]
  buffer = io.BytesIO()
  Image.fromarray(array).save(buffer, format="PNG", compress_level=1)
  return buffer.getvalue()


def _already_plain(image, data, mode, turn):
  """Bytes any decoder (PIL, OpenCV) reads as 8-bit `mode` exactly as we would: not turned by
  an EXIF orientation (TFDS decodes without it)."""
  if turn != 1 or image.mode != mode or "transparency" in image.info:
    return False
  if image.format == "PNG":
    return data[24] == 8  # IHDR bit depth: 16-bit RGB PNGs also open as "RGB" in PIL
  return image.format == "JPEG"


def load_pair(image_path, label_path):
  """Decodes and checks an (image, label) pair of files.

  Returns (image_bytes, label_bytes, label) where the bytes are the original
  files when they already decode to 8-bit RGB / 8-bit grey JPEG or PNG with no
  EXIF orientation to apply, and PNG re-encodings of the normalised (upright)
  arrays otherwise. `label` is the decoded (H, W, 1) uint8 label. Raises
  DecodeError naming the file on unreadable files or when the two (upright)
  sizes differ.
  """
  image_data = read_bytes(image_path)
  label_data = read_bytes(label_path)
  image, image_turn = _open(image_data, os.fspath(image_path))
  label_image, label_turn = _open(label_data, os.fspath(label_path))
  check_pair_size(image_path, image.size[::-1], label_path, label_image.size[::-1])
  label = label_array(label_image, os.fspath(label_path))
  if not _already_plain(image, image_data, "RGB", image_turn):
    image_data = encode_png(image_array(image, os.fspath(image_path)))
  if not _already_plain(label_image, label_data, "L", label_turn):
    label_data = encode_png(label)
  return image_data, label_data, label


def check_pair_size(image_path, image_hw, label_path, label_hw):
  """DecodeError naming the label unless the (H, W) sizes are equal."""
  if tuple(image_hw) == tuple(label_hw):
    return
  (ih, iw), (lh, lw) = image_hw, label_hw
  hint = ""
  if (lh, lw) == (iw, ih):
    hint = (
      "; it is the image's size turned by 90 degrees: images are read upright by their EXIF "
      "orientation tag, and a label must match the upright image"
    )
  raise DecodeError(
    f"{label_path}: label size {lw}x{lh} differs from image {image_path} size {iw}x{ih} "
    f"(width x height){hint}"
  )
