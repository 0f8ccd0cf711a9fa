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
