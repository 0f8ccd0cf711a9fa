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

EXIF orientation is not applied: pixels are used as stored, like the labels.
"""

import io
import os

import numpy as np
from PIL import Image, UnidentifiedImageError

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
  """Fully decoded PIL image from bytes; DecodeError naming `name` if impossible."""
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
  return image


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
  """(H, W) of an image file from its header, without decoding the pixels."""
  try:
    with Image.open(os.fspath(path)) as image:
      width, height = image.size
  except FileNotFoundError as e:
    raise DecodeError(f"{path}: cannot read file: {e.strerror or e}") from e
  except Exception as e:  # PIL raises many types for unreadable headers.
    raise DecodeError(f"{path}: not a readable image file: {e}") from e
  if width == 0 or height == 0:
    raise DecodeError(f"{path}: image has zero size {(width, height)}")
  return height, width


def encode_png(array):
  """uint8 (H, W), (H, W, 1) or (H, W, 3) -> PNG bytes (fast compression)."""
  array = np.asarray(array)
  if array.ndim == 3 and array.shape[-1] == 1:
    array = array[..., 0]
  buffer = io.BytesIO()
  Image.fromarray(array).save(buffer, format="PNG", compress_level=1)
  return buffer.getvalue()


def _already_plain(image, data, mode):
  """Bytes any decoder (PIL, OpenCV) reads as 8-bit `mode` exactly as we would."""
  if image.mode != mode or "transparency" in image.info:
    return False
  if image.format == "PNG":
    return data[24] == 8  # IHDR bit depth: 16-bit RGB PNGs also open as "RGB" in PIL
  return image.format == "JPEG"


def load_pair(image_path, label_path):
  """Decodes and checks an (image, label) pair of files.

  Returns (image_bytes, label_bytes, label) where the bytes are the original
  files when they already decode to 8-bit RGB / 8-bit grey JPEG or PNG, and
  PNG re-encodings of the normalised arrays otherwise. `label` is the decoded
  (H, W, 1) uint8 label. Raises DecodeError naming the file on unreadable
  files or when the two sizes differ.
  """
  image_data = read_bytes(image_path)
  label_data = read_bytes(label_path)
  image = open_image(image_data, os.fspath(image_path))
  label_image = open_image(label_data, os.fspath(label_path))
  if image.size != label_image.size:
    raise DecodeError(
      f"{label_path}: label size {label_image.width}x{label_image.height} differs from "
      f"image {image_path} size {image.width}x{image.height} (width x height)"
    )
  label = label_array(label_image, os.fspath(label_path))
  if not _already_plain(image, image_data, "RGB"):
    image_data = encode_png(image_array(image, os.fspath(image_path)))
  if not _already_plain(label_image, label_data, "L"):
    label_data = encode_png(label)
  return image_data, label_data, label
