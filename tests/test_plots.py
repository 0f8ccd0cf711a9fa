"""poolnet_jax.inference.plots: the prediction grid (rows of image, prediction and ground truth, a
title band) and the PR / F-measure curve files."""

import numpy as np
from PIL import Image
import pytest

from poolnet_jax.inference import plots
from image_files import read_png


def _text_pixels(band, start, stop):
  return int((band[:, start:stop].max(axis=-1) > 128).sum())


def test_prediction_grid_rows_of_image_prediction_and_ground_truth():
  rng = np.random.default_rng(0)
  images = [
    rng.integers(0, 256, (32, 40, 3), dtype=np.uint8),
    rng.integers(0, 256, (64, 48, 3), dtype=np.uint8),
  ]
  preds = [rng.uniform(0, 1, (32, 40)), rng.integers(0, 256, (64, 48), dtype=np.uint8)]
  gts = [
    rng.integers(0, 2, (32, 40, 1), dtype=np.uint8) * 255,
    rng.integers(0, 2, (64, 48), dtype=np.uint8) * 255,
  ]
  grid = plots.prediction_grid(images, preds, gts, row_height=32, title="update 1250")
  # A title band, a band of column titles, then the rows. Columns are as wide as the widest
  # panel or title ("ground truth" in PIL's default font): each panel at the left of its column.
  band = plots.TEXT_BAND
  col = grid.shape[1] // 3
  assert grid.shape == (2 * band + 64, 3 * col, 3) and grid.dtype == np.uint8
  assert col >= 60  # wider than the 40-pixel panels: the titles fit
  title, heads, rows = grid[:band], grid[band : 2 * band], grid[2 * band :]
  assert _text_pixels(title, 0, col) > 20 and _text_pixels(title, col, 3 * col) == 0
  for index in range(3):
    assert _text_pixels(heads, index * col, (index + 1) * col) > 20, index
  # Text drawn by hand with the same font reads the same.
  from PIL import ImageDraw, ImageFont

  expected = Image.new("RGB", (3 * col, band))
  for index, text in enumerate(("image", "prediction", "ground truth")):
    ImageDraw.Draw(expected).text(
      (index * col + 4, 2), text, fill=(255, 255, 255), font=ImageFont.load_default()
    )
  np.testing.assert_array_equal(heads, np.asarray(expected))
  np.testing.assert_array_equal(rows[:32, :40], images[0])
  np.testing.assert_array_equal(
    rows[:32, col : col + 40, 1], np.rint(preds[0] * 255).astype(np.uint8)
  )
  np.testing.assert_array_equal(rows[:32, 2 * col : 2 * col + 40, 0], gts[0][..., 0])
  half = np.asarray(Image.fromarray(images[1]).resize((24, 32), Image.BILINEAR))
  np.testing.assert_array_equal(rows[32:, :24], half)
  half_gt = np.asarray(Image.fromarray(gts[1]).resize((24, 32), Image.BILINEAR))
  np.testing.assert_array_equal(rows[32:, 2 * col : 2 * col + 24, 2], half_gt)
  for start in (24, col + 24, 2 * col + 24):
    assert (rows[32:, start : start + col - 24] == 0).all()
  untitled = plots.prediction_grid(images, preds, gts, row_height=32)
  assert untitled.shape == (band + 64, 3 * col, 3)  # no title: one band less
  with pytest.raises(ValueError, match="as many"):
    plots.prediction_grid(images, preds[:1], gts)


def test_curve_plots_are_written(tmp_path):
  t = np.arange(256)
  curve = {
    "thresholds": t,
    "precision": 0.5 + t / 512,
    "recall": 1 - t / 255,
    "fmeasure": np.sin(t / 255 * np.pi),
  }
  pr = plots.precision_recall_curve({"a": curve, "b": curve}, tmp_path / "pr.png")
  fm = plots.fmeasure_curve({"a": curve}, tmp_path / "sub" / "f.png")
  for path in (pr, fm):
    picture = read_png(path)
    assert picture.shape[0] >= 300 and picture.std() > 5


# Label conventions.
