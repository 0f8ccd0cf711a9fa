"""Where a training run's log lines go: all of them to a file, the run's own to the console.

The libraries a run uses (orbax above all: some 40 INFO lines per checkpoint,
tfds, grain, absl) log at INFO; on the console those lines bury the progress
bar and the validation results. `route_logs` is called by the entry point
(train.py), never on import.
"""

import logging
import os
import sys

from absl import logging as absl_logging
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
