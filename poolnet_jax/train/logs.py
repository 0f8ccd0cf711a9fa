"""Where a training run writes: its log lines (all to a file, the run's own to the
console) and its metrics (TensorBoard event files and a JSONL log, from process 0 only).
"""

import json
import logging
import os
import sys
import time

from absl import logging as absl_logging
import jax
import numpy as np
import tqdm


PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep


class _Console(logging.Handler):
  """stderr through tqdm.write, so that a progress bar stays whole below the lines."""

  def emit(self, record):
    try:
      tqdm.tqdm.write(self.format(record), file=sys.stderr)
    except Exception:  # pylint: disable=broad-except
      self.handleError(record)


class _ConsoleFormatter(logging.Formatter):
  def format(self, record):
    message = super().format(record)
    if record.levelno >= logging.WARNING:
      return f"{record.levelname.lower()}: {message}"
    return message


def route_logs(log_file, console_sources=()):
  """Sends every record (INFO and up) to `log_file`, appending, in absl's format, and to the
  console (stderr) warnings and errors from anywhere but INFO lines only from poolnet_jax
  and the files in `console_sources` (an entry point's own `__file__`).

  Replaces absl's stderr handler on the root logger. Returns the file handler.
  """
  os.makedirs(os.path.dirname(os.path.abspath(log_file)), exist_ok=True)
  sources = tuple(os.path.abspath(s) for s in console_sources)

  def on_console(record):
    if record.levelno >= logging.WARNING:
      return True
    path = os.path.abspath(record.pathname)
    return record.levelno >= logging.INFO and (path.startswith(PACKAGE_DIR) or path in sources)

  root = logging.getLogger()
  root.removeHandler(absl_logging.get_absl_handler())
  to_file = logging.FileHandler(log_file, encoding="utf-8")
  to_file.setFormatter(absl_logging.PythonFormatter())
  console = _Console()
  console.setFormatter(_ConsoleFormatter())
  console.addFilter(on_console)
  root.addHandler(to_file)
  root.addHandler(console)
  if root.level > logging.INFO:
    root.setLevel(logging.INFO)
  return to_file


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
