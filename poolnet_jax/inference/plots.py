"""Pictures of an evaluation: precision-recall and F-measure curves, prediction grids.

Figures are drawn on matplotlib's Agg canvas directly (no pyplot, no global
backend change), so this works headless and inside other programs; the grids'
titles with PIL's default font (no figure per call).
"""

import functools
import os

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from poolnet_jax.imaging import image as image_lib


def _save(figure, path):
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  FigureCanvasAgg(figure)
  figure.savefig(path, dpi=100)
  return path


def precision_recall_curve(curves, path, title="Precision-recall"):
  """PNG of precision against recall, one line per {label: curves} entry.

  `curves` values are dicts with "precision" and "recall" arrays (as
  `SaliencyMetrics.curves()` returns them). Returns `path`.
  """
  figure = Figure(figsize=(5, 5))
  axes = figure.add_subplot()
  for label, curve in curves.items():
    axes.plot(curve["recall"], curve["precision"], label=label)
  axes.set(xlabel="Recall", ylabel="Precision", xlim=(0, 1), ylim=(0, 1.02), title=title)
  axes.grid(alpha=0.3)
  axes.legend(loc="lower left")
  figure.tight_layout()
  return _save(figure, path)


def fmeasure_curve(curves, path, title="F-measure (beta^2 = 0.3) per threshold"):
  """PNG of F-measure against the threshold level (0-255); marks each maximum. Returns `path`."""
  figure = Figure(figsize=(6, 4))
  axes = figure.add_subplot()
  for label, curve in curves.items():
    thresholds, values = np.asarray(curve["thresholds"]), np.asarray(curve["fmeasure"])
    best = int(np.argmax(values))
    (line,) = axes.plot(thresholds, values, label=f"{label} (max {values[best]:.4f} at {best})")
    axes.plot([thresholds[best]], [values[best]], "o", color=line.get_color())
  axes.set(
    xlabel="Threshold (8-bit level)", ylabel="F-measure", xlim=(0, 255), ylim=(0, 1.02), title=title
  )
  axes.grid(alpha=0.3)
  axes.legend(loc="best")
  figure.tight_layout()
  return _save(figure, path)


def _panel(picture, height):
  """uint8 RGB (height, W', 3) of an RGB image, a grey map or a mask, aspect kept."""
  picture = np.asarray(picture)
  if picture.ndim == 3 and picture.shape[-1] == 1:
    picture = picture[..., 0]
  if picture.dtype != np.uint8:
    picture = image_lib.to_uint8_map(picture)
  if picture.ndim == 2:
    picture = np.repeat(picture[..., None], 3, axis=-1)
  if picture.shape[0] != height:
    width = max(1, round(picture.shape[1] * height / picture.shape[0]))
    picture = np.asarray(Image.fromarray(picture).resize((width, height), Image.BILINEAR))
  return picture


COLUMN_TITLES = ("image", "prediction", "ground truth")
TEXT_BAND = 16  # pixels per line of text: PIL's default font is about 11 high
TEXT_PAD = 4


def _text_band(width, texts, lefts):
  """uint8 RGB (TEXT_BAND, width, 3), black with each white text at its left edge."""
  band = Image.new("RGB", (width, TEXT_BAND))
  draw = ImageDraw.Draw(band)
  for text, left in zip(texts, lefts):
    draw.text((left + TEXT_PAD, 2), text, fill=(255, 255, 255), font=_font())
  return np.asarray(band)


@functools.lru_cache(maxsize=1)
def _font():
  return ImageFont.load_default()


def prediction_grid(images, preds, gts, row_height=128, title=None):
  """One uint8 RGB picture: `title` (e.g. "update 1250") on a first band if given, a band of
  column titles (image | prediction | ground truth), then a row per example.

  `images` uint8 RGB (H, W, 3); `preds` float maps in [0, 1] or uint8 maps;
  `gts` uint8 masks, (H, W) or (H, W, 1). Each panel is scaled to
  `row_height` (aspect kept) and placed at the left of a column as wide as the
  widest panel (and its title), so the three columns line up; the rest is black.
  """
  if not len(images) == len(preds) == len(gts):
    raise ValueError(
      f"prediction_grid needs as many images, predictions and ground truths, "
      f"got {len(images)}, {len(preds)} and {len(gts)}"
    )
  if not len(images):
    raise ValueError("prediction_grid needs at least one example")
  panels = [[_panel(p, row_height) for p in triple] for triple in zip(images, preds, gts)]
  title_width = max(_font().getbbox(text)[2] for text in COLUMN_TITLES) + 2 * TEXT_PAD
  width = max([title_width] + [panel.shape[1] for row in panels for panel in row])
  bands = [_text_band(3 * width, [title], [0])] if title else []
  bands.append(_text_band(3 * width, COLUMN_TITLES, [0, width, 2 * width]))
  return np.concatenate(
    bands
    + [
      np.concatenate([np.pad(p, ((0, 0), (0, width - p.shape[1]), (0, 0))) for p in row], axis=1)
      for row in panels
    ],
    axis=0,
  )
