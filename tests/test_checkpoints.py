"""Resuming from damaged checkpoints, and from checkpoints of another configuration."""

import logging
import os
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import struct

from poolnet_jax.train import checkpoints as checkpoints_lib


class State(struct.PyTreeNode):
  """The fields Checkpoints saves, as a TrainState has them."""

  step: jnp.ndarray
  params: dict
  batch_stats: dict
  opt_state: object


def make_state(width=3, value=0.0):
  params = {"conv": {"kernel": jnp.full((3, 3, 2, width), value), "bias": jnp.zeros((width,))}}
  return State(
    step=jnp.asarray(0, jnp.int32),
    params=params,
    batch_stats={"bn": {"mean": jnp.full((width,), value)}},
    opt_state=optax.adam(1e-3).init(params),
  )


def save_steps(directory, steps, keep=2):
  checkpoints = checkpoints_lib.Checkpoints(directory, keep=keep)
  for step in steps:
    state = make_state(value=float(step)).replace(step=jnp.asarray(step, jnp.int32))
    checkpoints.save(step, state, {"position": step}, force=True)
  checkpoints.wait()
  checkpoints.close()


def data_files(directory, step):
  """The array data files of a step, largest first."""
  files = [
    p
    for p in (Path(directory) / str(step) / "state").rglob("*")
    if p.is_file() and p.parent.name == "d"
  ]
  return sorted(files, key=lambda p: p.stat().st_size, reverse=True)


def truncate(path):
  with open(path, "r+b") as f:
    f.truncate(path.stat().st_size // 2)


def restore(directory, state=None):
  checkpoints = checkpoints_lib.Checkpoints(directory, keep=2)
  try:
    return checkpoints.restore(state or make_state())
  finally:
    checkpoints.close()


@pytest.mark.parametrize("damage", ["truncate", "delete"])
def test_restore_skips_a_damaged_newest_step(tmp_path, caplog, capfd, damage):
  directory = tmp_path / "checkpoints"
  save_steps(directory, [1, 2])
  for path in data_files(directory, 2):
    truncate(path) if damage == "truncate" else path.unlink()
  with caplog.at_level(logging.WARNING):
    state, data = restore(directory)
  assert int(state.step) == 1 and data == {"position": 1}
  np.testing.assert_array_equal(state.params["conv"]["kernel"], np.full((3, 3, 2, 3), 1.0))
  warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
  assert len(warnings) == 1 and "step 2 is damaged" in warnings[0], warnings
  assert "resuming from step 1" in warnings[0] and "\n" not in warnings[0]
  # Set aside, not deleted: the run can save step 2 again, the files are still there.
  assert sorted(os.listdir(directory)) == ["1", "2.damaged"]
  assert "Event loop is closed" not in capfd.readouterr().err
  save_steps(directory, [2])
  assert int(restore(directory)[0].step) == 2


def test_restore_without_an_intact_step_is_one_clear_error(tmp_path, capfd):
  directory = tmp_path / "checkpoints"
  save_steps(directory, [1, 2])
  for step in (1, 2):
    for path in data_files(directory, step):
      truncate(path)
  with pytest.raises(checkpoints_lib.NoIntactCheckpoint) as error:
    restore(directory)
  message = str(error.value)
  assert message.startswith(f"{directory}: no intact checkpoint") and "\n" not in message
  assert "step 2: " in message and "step 1: " in message
  assert sorted(os.listdir(directory)) == ["1", "2"]  # nothing moved when nothing loads
  assert "Event loop is closed" not in capfd.readouterr().err


def test_restore_refuses_a_checkpoint_of_another_model(tmp_path):
  directory = tmp_path / "checkpoints"
  save_steps(directory, [1])
  with pytest.raises(
    checkpoints_lib.CheckpointDoesNotFit,
    match=r"1 does not fit the configured model .*params:conv:bias: "
    r"checkpoint \(3,\), config \(5,\)",
  ):
    restore(directory, make_state(width=5))


def test_restore_refuses_a_checkpoint_of_another_optimizer(tmp_path):
  directory = tmp_path / "checkpoints"
  save_steps(directory, [1])
  state = make_state()
  state = state.replace(opt_state=optax.sgd(0.1, momentum=0.9).init(state.params))
  with pytest.raises(checkpoints_lib.CheckpointDoesNotFit, match="configured optimizer"):
    restore(directory, state)
