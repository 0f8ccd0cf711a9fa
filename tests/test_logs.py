"""A run's logs: what reaches the console and the log file, and metrics.jsonl on resume."""

import json
import logging
import os

import pytest

from poolnet_jax.train import logs


@pytest.fixture
def routed(tmp_path):
  """route_logs to tmp_path/train.log; the root logger's handlers are put back afterwards."""
  root = logging.getLogger()
  handlers, level = root.handlers[:], root.level
  try:
    yield logs.route_logs(tmp_path / "train.log")
  finally:
    for handler in root.handlers[:]:
      if handler not in handlers:
        root.removeHandler(handler)
        handler.close()
    root.setLevel(level)


def _log(level, message, pathname):
  record = logging.LogRecord("absl", level, pathname, 1, message, (), None)
  logging.getLogger().handle(record)


def test_library_info_goes_to_the_file_only(routed, tmp_path, capfd):
  del routed
  library = "/usr/lib/python3/site-packages/orbax/checkpoint/checkpoint_manager.py"
  own = os.path.join(logs.PACKAGE_DIR, "train", "loop.py")
  _log(logging.INFO, "Finished asynchronous save", library)
  _log(logging.WARNING, "a library warning", library)
  _log(logging.INFO, "validation at update 3: MAE 0.1", own)
  err = capfd.readouterr().err
  assert err.splitlines() == ["warning: a library warning", "validation at update 3: MAE 0.1"]
  text = (tmp_path / "train.log").read_text()
  for message in ("Finished asynchronous save", "a library warning", "validation at update 3"):
    assert message in text
  assert "checkpoint_manager.py:1] Finished" in text  # absl's format: file and line


def _row(step, **values):
  return json.dumps({"step": step, **values}) + "\n"


def test_truncate_after_drops_rows_after_the_checkpoint(tmp_path):
  path = tmp_path / "metrics.jsonl"
  path.write_text(
    _row(2, loss=1.0) + _row(3, mae=0.5) + _row(4, loss=0.9) + _row(6, loss=0.8) + '{"step": 7, "lo'
  )  # a partial line: the run was killed while writing
  writer = logs.MetricWriter(str(tmp_path), enabled=True)
  assert writer.truncate_after(3) == 3
  writer.scalars(4, {"loss": 0.95})
  writer.close()
  rows = [json.loads(line) for line in path.read_text().splitlines()]
  assert [(r["step"], next(k for k in r if k not in ("step", "time"))) for r in rows] == [
    (2, "loss"),
    (3, "mae"),
    (4, "loss"),
  ]
  assert rows[-1]["loss"] == 0.95
