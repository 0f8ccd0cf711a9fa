"""Periodic validation during training: metrics, a prediction grid, the best model kept."""

import json
import os

from absl import logging
import jax
import numpy as np

from poolnet_jax.inference import predictor as predictor_lib, metrics as metrics_lib, plots
from poolnet_jax.weights import pretrained

GRID_IMAGES = 6


def validate(model, variables, source, max_images=0, size=None, writer=None, step=0):
  """The field's measures (metrics.KEYS) over `source`, logged with a prediction grid.

  `max_images` > 0 takes only the first ones. The maps are those
  `python -m poolnet_jax.cli.evaluate` computes (native size unless `size`), so the
  numbers equal the evaluation command's; the grid shows the first GRID_IMAGES.
  """
  shown = []

  def show(index, image, levels, gt):
    if index < GRID_IMAGES:
      shown.append((image, levels, gt))

  metrics = predictor_lib.evaluate_model(model, variables, source, size, max_images, on_map=show)
  if metrics.scaled_gts:
    logging.warning(
      "validation: %d ground truths stored as 0/1 were read as 0/255 (%s, ...)",
      len(metrics.scaled_gts),
      ", ".join(metrics.scaled_gts[:5]),
    )
  everything = metrics.results()
  results = {key: everything[key] for key in metrics_lib.KEYS}
  logging.info(
    "validation at update %d over %d images: %s",
    step,
    len(metrics),
    ", ".join(f"{k} {v:.4f}" for k, v in results.items()),
  )
  if writer is not None:
    grid = plots.prediction_grid(*zip(*shown), title=f"update {step}")
    writer.scalars(step, results, prefix="val/")
    writer.image(step, "val/predictions", grid)
    writer.save_png(step, "predictions", grid)
  return results


class BestModel:
  """Exports the model with the lowest validation MAE as a `load_pretrained` directory."""

  def __init__(self, directory, spec):
    self.directory, self.spec = directory, spec
    self.record_file = os.path.join(directory, "best.json")
    self.best_mae = np.inf
    if os.path.exists(self.record_file):
      with open(self.record_file, encoding="utf-8") as f:
        self.best_mae = json.load(f)["MAE"]

  def update(self, step, results, variables):
    if not results or not results["MAE"] < self.best_mae:
      return False
    self.best_mae = results["MAE"]
    pretrained.save_pretrained(
      self.directory, self.spec, variables, overwrite=True
    )  # the one writer of this directory
    if jax.process_index() == 0:  # every process saves (orbax writes once); one writes the rest
      with open(self.record_file, "w", encoding="utf-8") as f:
        json.dump({"step": step, **{k: float(v) for k, v in results.items()}}, f, indent=2)
      logging.info("best model so far (MAE %.4f) exported to %s", self.best_mae, self.directory)
    return True
