"""Metrics to TensorBoard event files and a JSONL log; silent on all but process 0."""

import json
import logging
import os
import time

import jax
import numpy as np


class MetricWriter:
  """`scalars(step, dict)` and `image(step, name, uint8 HWC)` for the workdir."""

  def __init__(self, workdir, enabled=None):
    self.enabled = jax.process_index() == 0 if enabled is None else enabled
    if not self.enabled:
      return
    from tensorboardX import SummaryWriter  # pylint: disable=import-outside-toplevel

    os.makedirs(workdir, exist_ok=True)
    self._tb = SummaryWriter(os.path.join(workdir, "tensorboard"))
    self._images = os.path.join(workdir, "images")
    self._jsonl = open(os.path.join(workdir, "metrics.jsonl"), "a", encoding="utf-8")

  def scalars(self, step, values, prefix=""):
    if not self.enabled:
      return
    values = {f"{prefix}{k}": float(v) for k, v in values.items()}
    for key, value in values.items():
      self._tb.add_scalar(key, value, step)
    self._jsonl.write(json.dumps({"step": int(step), "time": time.time(), **values}) + "\n")
    self._jsonl.flush()

  def truncate_after(self, step):
    """Drops the metrics.jsonl rows of steps after `step` (and any partial last line).

    A resumed run calls it with its checkpoint's step: the rows logged after that
    checkpoint belong to updates it is about to redo. Returns the rows dropped.
    """
    if not self.enabled:
      return 0
    self._jsonl.close()
    path, kept, dropped = self._jsonl.name, [], 0
    with open(path, encoding="utf-8") as f:
      for line in f:
        try:
          row_step = json.loads(line)["step"]
        except (ValueError, KeyError, TypeError):
          row_step = None
        if row_step is not None and line.endswith("\n") and row_step <= step:
          kept.append(line)
        else:
          dropped += 1
    if dropped:
      with open(path + ".tmp", "w", encoding="utf-8") as f:
        f.writelines(kept)
      os.replace(path + ".tmp", path)
      logging.info(
        "%s: dropped %d rows logged after update %d (the checkpoint resumed from)",
        path,
        dropped,
        step,
      )
    self._jsonl = open(path, "a", encoding="utf-8")
    return dropped

  def image(self, step, name, image):
    if self.enabled:
      self._tb.add_image(name, np.asarray(image), step, dataformats="HWC")

  def save_png(self, step, name, image):
    """Also writes `image` as images/<name>_<step>.png, for people without TensorBoard."""
    if self.enabled:
      from PIL import Image  # pylint: disable=import-outside-toplevel

      os.makedirs(self._images, exist_ok=True)
      Image.fromarray(np.asarray(image, np.uint8)).save(
        os.path.join(self._images, f"{name}_{int(step):06d}.png")
      )

  def close(self):
    if self.enabled:
      self._tb.close()
      self._jsonl.close()
