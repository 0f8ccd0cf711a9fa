"""What the training pipeline does to one example, in numpy on the host.

- `as_rgb` / `as_label`: any array a source gives -> uint8 RGB (H, W, 3) /
  uint8 (H, W) (grey repeated, alpha dropped, deeper than 8 bits scaled as in
  `decode`; a label keeps its first channel, as the original reads masks).
- resizing: `poolnet_jax.imaging.resize.resize` with aligned corners (output pixel i
  samples input coordinate i * (in - 1) / (out - 1)), the semantics of
  `poolnet_jax.imaging.ops.resize_bilinear` and of every resize inside the original
  network; no antialiasing. Images and labels are resized as float32 0..255.
- `native_size` (`poolnet_jax.imaging.resize.native_size`): an image's own size,
  scaled up if a side is below the network's minimum.
- `prepare`: flip, resize, back to uint8; an edge label then has every value
  > 127.5 set to 255 and keeps the others, as the original does (its balanced
  loss weighs values other than 0 and 1 by 0). Preprocessing runs on the device.
- `image_size`: an example's (H, W) without decoding its pixels when the
  source allows it (FolderSource, TFDS data sources), for grouping by size.
"""

import io

import numpy as np
from PIL import Image

from poolnet_jax.data import decode
from poolnet_jax.imaging.resize import native_size  # noqa: F401  (the pipeline's; one rule with inference)
from poolnet_jax.imaging.resize import resize


def as_rgb(image, name="<example>"):
  """uint8 RGB (H, W, 3) from grey, grey + alpha, RGB or RGBA arrays of any depth."""
  image = decode.to_uint8(np.asarray(image))
  if image.ndim == 2:
    image = image[..., None]
  if image.ndim != 3 or image.shape[-1] not in (1, 2, 3, 4) or 0 in image.shape:
    raise decode.DecodeError(f"{name}: unsupported image shape {image.shape}")
  if image.shape[-1] in (2, 4):  # drop alpha
    image = image[..., :-1]
  return np.repeat(image, 3, axis=-1) if image.shape[-1] == 1 else image


def as_label(label, name="<example>"):
  """uint8 (H, W): the first channel of a (H, W), (H, W, 1) or (H, W, C) label."""
  label = decode.to_uint8(np.asarray(label))
  if label.ndim == 3:
    label = label[..., 0]
  if label.ndim != 2:
    raise decode.DecodeError(f"{name}: unsupported label shape {label.shape}")
  return label


def nearest_bucket(shape, buckets):
  """The (H, W) bucket closest to `shape` in log aspect ratio (ties: the first listed)."""
  aspect = np.log(shape[1] / shape[0])
  return tuple(min(buckets, key=lambda b: abs(np.log(b[1] / b[0]) - aspect)))


def prepare(rgb, label, size, flip, is_edge):
  """uint8 RGB (H, W, 3) and uint8 label (H, W) -> the uint8 image and label trained on.

  Returns (image (h, w, 3) RGB, label (h, w, 1) in 0..255) at `size` = (h, w)
  (None: the image's own size, then nothing is resized), flipped left-right if
  `flip`. Resizing is bilinear in float32, rounded back to 8 bits (as OpenCV's
  resize of an 8-bit image); an edge label then has every value above 127.5 set
  to 255. The device does the rest (BGR minus mean, label / 255: train/step.py),
  so a batch crosses to it at a quarter of float32's bytes.
  """
  if flip:
    rgb, label = rgb[:, ::-1], label[:, ::-1]
  label = label[..., None]
  size = tuple(size or rgb.shape[:2])
  if size != rgb.shape[:2]:
    rgb, label = resize(rgb, size), resize(label, size)
  if is_edge:
    label = np.where(label > 127.5, label.dtype.type(255), label)
  return _to_uint8(rgb), _to_uint8(label)


def _to_uint8(array):
  if array.dtype == np.uint8:
    return array
  return np.clip(np.rint(array), 0, 255).astype(np.uint8)


def example_name(example, index):
  name = example.get("name") if hasattr(example, "get") else None
  if isinstance(name, (bytes, np.bytes_)):
    name = bytes(name).decode("utf-8", "replace")
  return str(name) if name is not None and str(name) else f"example {index}"


class SizeReader:
  """(H, W) of example `index` of a source, as cheaply as the source allows.

  FolderSource (`image_size`) and TFDS data sources are read from the image
  header only; any other source is indexed and its image's shape taken.
  """

  def __init__(self, source):
    self.source = source
    self._features = None
    if hasattr(source, "image_size"):
      self._read = source.image_size
    elif hasattr(source, "dataset_info") and hasattr(source, "data_source"):
      self._read = self._tfds_size
    else:
      self._read = lambda index: np.shape(source[index]["image"])[:2]

  def _tfds_size(self, index):
    if self._features is None:
      import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel

      self._features = self.source.dataset_info.features
      self._skip = {"image": tfds.decode.SkipDecoding()}
    encoded = self._features.deserialize_example_np(
      self.source.data_source[index], decoders=self._skip
    )["image"]
    if isinstance(encoded, np.ndarray):  # stored as a raw array, not encoded bytes
      return encoded.shape[:2]
    width, height = Image.open(io.BytesIO(encoded)).size
    return (height, width)

  def __call__(self, index):
    size = tuple(int(n) for n in self._read(index))
    if len(size) != 2 or min(size) < 1:
      raise decode.DecodeError(f"example {index}: image size {size}")
    return size
