"""The training loop end to end on a tiny model and the tiny synthetic set.

Outputs (checkpoints, logs, grid, best model), exact resume (also past a damaged
newest checkpoint, and refused for another model width), SIGTERM, kill -9 during
saves, a non-finite loss, fine-tuning from a converted checkpoint, and the console.
"""

import glob
import gzip
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time

import flax
import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

import poolnet_jax
from poolnet_jax.train import checkpoints as checkpoints_lib
from poolnet_jax.train import loop

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS = 6


def tiny_config(data_dir, **changes):
  sys.path.insert(0, ROOT)
  from poolnet_jax.configs import tiny  # pylint: disable=import-outside-toplevel

  config = tiny.get_config()
  config.data_dir = str(data_dir)
  config.num_train_steps = STEPS
  for key, value in changes.items():
    config[key] = value
  return config


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  return tmp_path_factory.mktemp("tfds")


def final_params(workdir, step=None):
  """Parameters of a run's checkpoint (default: latest), read back with orbax alone."""
  manager = ocp.CheckpointManager(os.path.join(workdir, "checkpoints"), item_names=("state",))
  step = manager.latest_step() if step is None else step
  restored = manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore()))
  return step, {
    k[len("params:") :]: v for k, v in restored["state"].items() if k.startswith("params:")
  }


def assert_same_params(a, b):
  assert a.keys() == b.keys()
  for key in a:
    np.testing.assert_array_equal(a[key], b[key], err_msg=key)


@pytest.fixture(scope="module")
def uninterrupted(data_dir, tmp_path_factory):
  """The reference run, profiled at updates 2-3 (which must change no number: the
  resumed run below is not profiled)."""
  workdir = tmp_path_factory.mktemp("uninterrupted")
  results = loop.train_and_evaluate(tiny_config(data_dir, profile_steps=(2, 3)), str(workdir))
  return workdir, results


def test_run_writes_checkpoints_logs_grid_and_best_model(uninterrupted):
  workdir, results = uninterrupted
  assert {"MAE", "maxF"} <= results.keys() and 0 <= results["MAE"] <= 1
  step, params = final_params(workdir)
  assert step == STEPS
  lines = [json.loads(l) for l in open(os.path.join(workdir, "metrics.jsonl"))]
  assert any("train/loss" in l for l in lines) and any("val/MAE" in l for l in lines)
  assert all(np.isfinite(l["train/loss"]) for l in lines if "train/loss" in l)
  events = os.listdir(os.path.join(workdir, "tensorboard"))
  assert any(name.startswith("events.out.tfevents") for name in events)
  # One trace, written when it stopped, holding the annotated updates 2 and 3 alone.
  traces = glob.glob(os.path.join(workdir, "tensorboard", "plugins", "profile", "*"))
  assert len(traces) == 1, traces
  assert glob.glob(os.path.join(traces[0], "*.xplane.pb"))
  (chrome,) = glob.glob(os.path.join(traces[0], "*.trace.json.gz"))
  with gzip.open(chrome) as f:
    events = json.load(f)["traceEvents"]
  assert sorted(e["args"]["step_num"] for e in events if e.get("name") == "update") == ["2", "3"]
  grids = os.listdir(os.path.join(workdir, "images"))
  assert any(name.startswith("predictions_") and name.endswith(".png") for name in grids)
  # The best model is a load_pretrained directory holding a checkpoint's weights.
  best = json.load(open(os.path.join(workdir, "best", "best.json")))
  model, variables = poolnet_jax.load_pretrained(os.path.join(workdir, "best"))
  assert model.width == 0.125
  _, best_params = final_params(workdir, best["step"])
  assert_same_params(flax.traverse_util.flatten_dict(variables["params"], sep=":"), best_params)


def test_resumed_run_ends_equal_to_uninterrupted_run(uninterrupted, data_dir, tmp_path):
  loop.train_and_evaluate(tiny_config(data_dir, num_train_steps=STEPS // 2), str(tmp_path))
  assert final_params(tmp_path)[0] == STEPS // 2
  loop.train_and_evaluate(tiny_config(data_dir), str(tmp_path))
  assert_same_params(final_params(tmp_path)[1], final_params(uninterrupted[0])[1])


def _train_process(workdir, data_dir, *flags):
  env = {**os.environ, "PYTHONPATH": ROOT}
  return subprocess.Popen(
    [
      sys.executable,
      os.path.join(ROOT, "train.py"),
      "--config",
      "poolnet_jax/configs/tiny.py",
      "--workdir",
      str(workdir),
      f"--config.data_dir={data_dir}",
      *flags,
    ],
    cwd=ROOT,
    env=env,
    stdout=subprocess.PIPE,
    stderr=subprocess.STDOUT,
    text=True,
  )


def _wait_for(predicate, process, timeout=300):
  deadline = time.time() + timeout
  while not predicate():
    assert process.poll() is None, process.stdout.read()[-3000:]
    assert time.time() < deadline, "timed out"
    time.sleep(0.1)


def _saved_steps(workdir):
  directory = os.path.join(workdir, "checkpoints")
  return (
    sorted(int(n) for n in os.listdir(directory) if n.isdigit()) if os.path.isdir(directory) else []
  )


@pytest.mark.slow
def test_sigterm_saves_and_exits_zero_then_resumes(uninterrupted, data_dir, tmp_path):
  process = _train_process(
    tmp_path,
    data_dir,
    "--config.num_train_steps=100000",
    "--config.checkpoint_every_steps=100000",
    "--config.log_every_steps=1",
  )
  _wait_for(
    lambda: (
      os.path.exists(tmp_path / "metrics.jsonl") and os.path.getsize(tmp_path / "metrics.jsonl") > 0
    ),
    process,
  )
  process.send_signal(signal.SIGTERM)
  output = process.communicate(timeout=300)[0]
  assert process.returncode == 0, output[-3000:]
  assert "SIGTERM" in output
  saved = _saved_steps(tmp_path)
  assert len(saved) == 1 and saved[0] >= 1
  loop.train_and_evaluate(tiny_config(data_dir, num_train_steps=saved[0] + 1), str(tmp_path))
  assert _saved_steps(tmp_path)[-1] == saved[0] + 1


@pytest.mark.slow
def test_kill_during_saves_leaves_a_resumable_checkpoint(uninterrupted, data_dir, tmp_path):
  process = _train_process(
    tmp_path,
    data_dir,
    f"--config.num_train_steps={STEPS}",
    "--config.checkpoint_every_steps=1",
    "--config.keep_checkpoints=10",
  )
  _wait_for(lambda: len(_saved_steps(tmp_path)) >= 2, process)
  process.kill()  # SIGKILL, very likely in the middle of an asynchronous save
  process.wait()
  loop.train_and_evaluate(tiny_config(data_dir), str(tmp_path))
  assert_same_params(final_params(tmp_path)[1], final_params(uninterrupted[0])[1])


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(data_dir, tmp_path):
  config = tiny_config(data_dir, learning_rate=1e12, checkpoint_every_steps=1)
  with pytest.raises(loop.NonFiniteLoss, match="loss is"):
    loop.train_and_evaluate(config, str(tmp_path))
  step, params = final_params(tmp_path)
  assert all(np.isfinite(v).all() for v in params.values())


def test_fine_tuning_starts_from_a_converted_checkpoint(data_dir, tmp_path):
  model = poolnet_jax.create_model("resnet50", width=0.125, stages=(1, 1, 1, 1))
  variables = jax.jit(model.init)(jax.random.PRNGKey(42), np.zeros((1, 128, 128, 3), np.float32))
  poolnet_jax.save_pretrained(
    tmp_path / "start", "resnet50", variables, width=0.125, stages=(1, 1, 1, 1)
  )
  # One update at a learning rate of 1e-9 (0 is refused) moves no parameter by more than 1e-8.
  config = tiny_config(
    data_dir, init_checkpoint=str(tmp_path / "start"), learning_rate=1e-9, num_train_steps=1
  )
  loop.train_and_evaluate(config, str(tmp_path / "run"))
  trained = final_params(tmp_path / "run")[1]
  start = flax.traverse_util.flatten_dict(jax.device_get(variables["params"]), sep=":")
  assert trained.keys() == start.keys()
  for key in start:
    np.testing.assert_allclose(trained[key], start[key], rtol=0, atol=1e-8, err_msg=key)


def _copy_run(workdir, tmp_path):
  copy = tmp_path / "run"
  shutil.copytree(workdir, copy)
  return copy


def _metric_rows(workdir):
  return [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]


def test_damaged_newest_checkpoint_resumes_from_the_one_before(
  uninterrupted, data_dir, tmp_path, caplog
):
  workdir = _copy_run(uninterrupted[0], tmp_path)
  newest = workdir / "checkpoints" / str(STEPS)
  largest = max((p for p in newest.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
  with open(largest, "r+b") as f:
    f.truncate(largest.stat().st_size // 2)
  with caplog.at_level(logging.WARNING):
    loop.train_and_evaluate(tiny_config(data_dir), str(workdir))
  warnings = [r.getMessage() for r in caplog.records if "is damaged" in r.getMessage()]
  assert len(warnings) == 1 and f"step {STEPS} is damaged" in warnings[0]
  assert f"resuming from step {STEPS // 2}" in warnings[0]
  assert_same_params(final_params(workdir)[1], final_params(uninterrupted[0])[1])
  # metrics.jsonl: the rows logged after the resumed checkpoint were dropped, then redone.
  rows = _metric_rows(workdir)
  keys = [(row["step"], "train" if "train/loss" in row else "val") for row in rows]
  assert sorted(keys) == sorted(
    (row["step"], "train" if "train/loss" in row else "val")
    for row in _metric_rows(uninterrupted[0])
  )
  assert len(keys) == len(set(keys))


def test_resuming_with_another_width_says_so_at_start(uninterrupted, data_dir, tmp_path):
  workdir = _copy_run(uninterrupted[0], tmp_path)
  before = (workdir / "metrics.jsonl").read_text()
  config = tiny_config(data_dir)
  config.model.width = 0.25
  with pytest.raises(
    checkpoints_lib.CheckpointDoesNotFit,
    match=rf"checkpoints/{STEPS} does not fit the configured model .*"
    r"checkpoint \(\d+,\), config \(\d+,\)",
  ):
    loop.train_and_evaluate(config, str(workdir))
  assert (workdir / "metrics.jsonl").read_text() == before


@pytest.mark.slow
def test_console_shows_progress_and_validation_and_the_log_file_the_rest(data_dir, tmp_path):
  process = _train_process(tmp_path, data_dir, "--config.num_train_steps=3")
  output = process.communicate(timeout=300)[0]
  assert process.returncode == 0, output[-3000:]
  lines = [l for l in output.replace("\r", "\n").splitlines() if l.strip()]
  assert any(l.startswith("validation at update 3") and "MAE" in l for l in lines)
  assert any(l.startswith("train: 100%") for l in lines)
  chatter = [l for l in lines if "orbax" in l or "checkpoint_manager" in l or l.startswith("I1")]
  assert not chatter, chatter[:5]
  log = (tmp_path / "train.log").read_text()
  assert "checkpoint_manager.py" in log and "validation at update 3" in log
