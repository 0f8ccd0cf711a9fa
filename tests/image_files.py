"""What the predict tests share: PNG files on disk, the sigmoid in float64, a saved tiny
model (the `tiny_saved` fixture, in conftest.py)."""

import numpy as np
from PIL import Image


def sigmoid(logits):
  return 1 / (1 + np.exp(-np.asarray(logits, np.float64)))


def save_png(path, array):
  path.parent.mkdir(parents=True, exist_ok=True)
  Image.fromarray(array).save(path)


def read_png(path):
  return np.asarray(Image.open(path))


# The stored pixels that each EXIF orientation turns into the upright picture (the inverse of
# the turn a viewer applies: 6 turns clockwise to show, 8 anticlockwise, 3 half a turn).
STORED = {
  3: lambda upright: np.rot90(upright, 2),
  6: lambda upright: np.rot90(upright, 1),
  8: lambda upright: np.rot90(upright, -1),
}


def save_turned(path, upright, orientation, **options):
  """Saves `upright` as a viewer would show the file: stored turned, with the EXIF tag
  Orientation (0x0112) = `orientation` (3, 6 or 8)."""
  path.parent.mkdir(parents=True, exist_ok=True)
  exif = Image.Exif()
  exif[0x0112] = orientation
  stored = np.ascontiguousarray(STORED[orientation](np.asarray(upright)))
  Image.fromarray(stored).save(path, exif=exif, **options)
  return path


def smooth_rgb(height, width, seed=0):
  """A smooth, asymmetric uint8 RGB picture: JPEG keeps it within a few levels."""
  rng = np.random.default_rng(seed)
  y, x = np.mgrid[0:height, 0:width] / max(height, width)
  phase = rng.uniform(0, 2 * np.pi, 3)
  channels = [np.sin(3 * x + 5 * y * y + p) for p in phase]
  picture = (np.stack(channels, axis=-1) + 1) * 100 + 20
  picture[: height // 3, : width // 4] = 250  # a bright corner: the turn shows
  return picture.astype(np.uint8)
