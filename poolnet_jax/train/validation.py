"""Periodic validation during training: metrics, a prediction grid, the best model kept."""

import json
import os

from absl import logging
import jax
import numpy as np
import py_sod_metrics
from PIL import Image

from poolnet_jax import image as image_lib
from poolnet_jax import ops
from poolnet_jax import pretrained

GRID_IMAGES = 6
GRID_HEIGHT = 128


def predict_saliency(model, variables, rgb, size=None):
  """uint8 map at the image's own size; run at `size` (H, W) if given, resized back.

  Images below the network's minimum size are upsampled to it (aspect kept).
  """
  x = image_lib.preprocess(rgb[None])
  smallest = model.min_input_size()
  if size is None and min(rgb.shape[:2]) < smallest:
    scale = smallest / min(rgb.shape[:2])
    size = tuple(max(smallest, round(n * scale)) for n in rgb.shape[:2])
  if size is not None:
    x = np.asarray(ops.resize_bilinear(x, tuple(size)))
  saliency = image_lib.saliency_map(_apply(model)(variables, x))
  saliency = ops.resize_bilinear(saliency, rgb.shape[:2]) if size is not None else saliency
  return image_lib.to_uint8_map(np.asarray(saliency)[0, ..., 0])


_APPLY = {}


def _apply(model):
  if model not in _APPLY:
    _APPLY[model] = jax.jit(model.apply)
  return _APPLY[model]


def validate(model, variables, source, max_images=0, size=None, writer=None, step=0):
  """MAE, max F and S-measure over (the first `max_images` of) `source`; logs them and a grid."""
  mae, fmeasure, smeasure = py_sod_metrics.MAE(), py_sod_metrics.Fmeasure(), py_sod_metrics.Smeasure()
  count = min(len(source), max_images) if max_images else len(source)
  shown = []
  for index in range(count):
    example = source[index]
    pred, gt = predict_saliency(model, variables, example["image"], size), example["mask"][..., 0]
    for metric in (mae, fmeasure, smeasure):
      metric.step(pred, gt)
    if index < GRID_IMAGES:
      shown.append((example["image"], pred, gt))
  results = {"MAE": float(mae.get_results()["mae"]),
             "maxF": float(fmeasure.get_results()["fm"]["curve"].max()),
             "Sm": float(smeasure.get_results()["sm"])}
  logging.info("validation at update %d over %d images: %s", step, count,
               ", ".join(f"{k} {v:.4f}" for k, v in results.items()))
  if writer is not None:
    writer.scalars(step, results, prefix="val/")
    if shown:
      grid = prediction_grid(shown)
      writer.image(step, "val/predictions", grid)
      writer.save_png(step, "predictions", grid)
  return results


def prediction_grid(rows):
  """(image, prediction, ground truth) triples -> one uint8 RGB picture, a row each."""
  def fit(picture):
    picture = Image.fromarray(picture)
    width = max(1, round(picture.width * GRID_HEIGHT / picture.height))
    return np.asarray(picture.convert("RGB").resize((width, GRID_HEIGHT), Image.BILINEAR))
  lines = [np.concatenate([fit(image), fit(pred), fit(gt)], axis=1) for image, pred, gt in rows]
  width = max(line.shape[1] for line in lines)
  return np.concatenate([np.pad(line, ((0, 0), (0, width - line.shape[1]), (0, 0)))
                         for line in lines], axis=0)


class BestModel:
  """Exports the model with the lowest validation MAE as a `load_pretrained` directory."""

  def __init__(self, directory, name, overrides):
    self.directory, self.name, self.overrides = directory, name, overrides
    self.record_file = os.path.join(directory, "best.json")
    self.best_mae = np.inf
    if os.path.exists(self.record_file):
      with open(self.record_file, encoding="utf-8") as f:
        self.best_mae = json.load(f)["MAE"]

  def update(self, step, results, variables):
    if not results or not results["MAE"] < self.best_mae:
      return False
    self.best_mae = results["MAE"]
    pretrained.save_pretrained(self.directory, self.name, variables, **self.overrides)
    if jax.process_index() == 0:
      with open(self.record_file, "w", encoding="utf-8") as f:
          json.dump({"step": step, **{k: float(v) for k, v in results.items()}}, f, indent=2)
    logging.info("best model so far (MAE %.4f) exported to %s", self.best_mae, self.directory)
    return True
