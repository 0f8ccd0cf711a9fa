"""Training checkpoints with orbax: the last N, asynchronous, exactly resumable.

A checkpoint holds the train state (step, params, batch_stats, optimizer state)
and the data iterator's state, so a resumed run sees the data it would have
seen. orbax writes each step to a temporary folder and renames it when
complete, so a run killed during a save leaves the previous checkpoint intact.
A step damaged afterwards (a file truncated or deleted) is skipped on restore:
the newest step that loads is taken, the damaged ones are moved aside.
The best model by validation MAE is exported separately (see loop.py).
"""

import logging
import os
import sys
import time

import jax
from jax.experimental import multihost_utils
import numpy as np
import orbax.checkpoint as ocp

from poolnet_jax.errors import UserError

DAMAGED_SUFFIX = ".damaged"
SHOWN = 3  # differences listed when a checkpoint does not fit


class NoIntactCheckpoint(UserError):
  """No kept checkpoint of a workdir loads."""


class CheckpointDoesNotFit(UserError):
  """A checkpoint whose arrays differ from the configured model's or optimizer's."""


def _state_tree(state):
  return {
    "step": state.step,
    "params": state.params,
    "batch_stats": state.batch_stats,
    "opt_state": state.opt_state,
  }


def _flat(tree):
  """{"a:b:0": leaf}: a flat dict orbax stores and restores whatever optax's state types."""
  return {
    ":".join(_key(k) for k in path): np.array(leaf, copy=True)  # copies: see save()
    for path, leaf in jax.tree_util.tree_leaves_with_path(tree)
  }


def _key(entry):
  for attribute in ("key", "name", "idx"):
    if hasattr(entry, attribute):
      return str(getattr(entry, attribute))
  return str(entry)


class Checkpoints:
  """orbax CheckpointManager over {state, data iterator state}."""

  def __init__(self, directory, keep=3, asynchronous=True):
    options = ocp.CheckpointManagerOptions(
      max_to_keep=keep, create=True, enable_async_checkpointing=asynchronous
    )
    self.directory = os.path.abspath(directory)
    self.manager = ocp.CheckpointManager(
      self.directory,
      options=options,
      item_handlers={"state": ocp.StandardCheckpointHandler(), "data": ocp.JsonCheckpointHandler()},
    )

  def latest_step(self):
    return self.manager.latest_step()

  def save(self, step, state, data_state, force=False):
    """Saves host-side `state` (a TrainState) and the iterator state (JSON-able)."""
    # _flat copies: on CPU np.asarray may alias buffers the next (donating) step reuses.
    tree = _flat(_state_tree(state))
    saved = self.manager.save(
      step,
      args=ocp.args.Composite(
        state=ocp.args.StandardSave(tree), data=ocp.args.JsonSave(data_state)
      ),
      force=force,
    )
    if saved:
      logging.info("checkpoint of step %d started", step)
    return saved

  def restore(self, state, step=None):
    """(state, data_state) of `step` (default: the newest intact step), shaped like `state`.

    Steps are tried newest first. One that does not load (a file truncated or
    deleted) is skipped with a warning naming its cause and, once an older one
    has loaded, moved to `<step>.damaged` so the run can save that step again.
    Raises NoIntactCheckpoint if none loads, CheckpointDoesNotFit if a step's
    arrays do not fit `state` (another model or optimizer configuration).
    """
    steps = [step] if step is not None else sorted(self.manager.all_steps(), reverse=True)
    if not steps:
      raise NoIntactCheckpoint(f"{self.directory}: no checkpoint to resume from")
    target = _flat(_state_tree(state))
    damaged = []
    with _QuietOrbaxFailures() as quiet:
      for candidate in steps:
        try:
          saved = self._saved_shapes(candidate)
        except Exception as error:  # pylint: disable=broad-except  (orbax: many types)
          quiet.failed()
          damaged.append((candidate, self._cause(error)))
          continue
        _check_fits(saved, target, self._step_dir(candidate))
        try:
          restored = self.manager.restore(
            candidate,
            args=ocp.args.Composite(
              state=ocp.args.StandardRestore(target), data=ocp.args.JsonRestore()
            ),
          )
          break
        except Exception as error:  # pylint: disable=broad-except  (orbax: many types)
          quiet.failed()
          damaged.append((candidate, self._cause(error)))
      else:
        causes = "; ".join(f"step {s}: {cause}" for s, cause in damaged)
        raise NoIntactCheckpoint(
          f"{self.directory}: no intact checkpoint to resume from "
          f"({causes}); move the folder away to start afresh"
        )
    self._set_aside(damaged, candidate)
    return self._state(state, restored["state"]), restored["data"]

  def _cause(self, error):
    """The first line of an error, its paths relative to the checkpoints folder."""
    text = (str(error).strip().splitlines() or [""])[0].replace(self.directory + os.sep, "")
    return f"{type(error).__name__}: {text[:240]}"

  def _step_dir(self, step):
    return os.path.join(self.directory, str(step))

  def _saved_shapes(self, step):
    """{flat key: shape} of a step's state, read from its metadata (None: not readable)."""
    metadata = self.manager.metadata(step).item_metadata
    tree = metadata["state"] if metadata is not None and "state" in metadata else None
    if tree is None:
      return None
    return {key: tuple(leaf.shape) for key, leaf in tree.items()}

  def _set_aside(self, damaged, resumed):
    """Renames the damaged steps' folders to `<step>.damaged` (process 0), logs, rereads."""
    if not damaged:
      return
    for step, cause in damaged:
      moved = "skipped"
      if jax.process_index() == 0:
        target, index = self._step_dir(step) + DAMAGED_SUFFIX, 1
        while os.path.exists(target):
          target, index = f"{self._step_dir(step)}{DAMAGED_SUFFIX}{index}", index + 1
        os.rename(self._step_dir(step), target)
        moved = f"moved to {target}"
      logging.warning(
        "checkpoint of step %d is damaged (%s); %s; resuming from step %d",
        step,
        cause,
        moved,
        resumed,
      )
    if jax.process_count() > 1:
      multihost_utils.sync_global_devices("poolnet_jax: damaged checkpoints set aside")
    self.manager.reload()

  @staticmethod
  def _state(state, flat):
    target = _state_tree(state)
    tree = jax.tree_util.tree_unflatten(
      jax.tree_util.tree_structure(target), [flat[key] for key in _flat(target)]
    )
    return state.replace(
      step=tree["step"],
      params=tree["params"],
      batch_stats=tree["batch_stats"],
      opt_state=tree["opt_state"],
    )

  def wait(self):
    self.manager.wait_until_finished()

  def close(self):
    self.manager.close()


def _check_fits(saved, target, source):
  """Raises CheckpointDoesNotFit unless `saved` ({key: shape}) has `target`'s keys and shapes."""
  if saved is None:
    return
  wanted = {key: tuple(np.shape(value)) for key, value in target.items()}
  differences = sorted(
    f"{key}: checkpoint {saved.get(key, 'absent')}, config {wanted.get(key, 'absent')}"
    for key in set(saved) | set(wanted)
    if saved.get(key) != wanted.get(key)
  )
  if not differences:
    return
  model = [d for d in differences if d.startswith(("params:", "batch_stats:"))]
  differences = model or differences  # the optimizer's state mirrors the parameters
  what = (
    "the configured model (another variant, width or stages?)"
    if model
    else "the configured optimizer (lr_schedule, reset_optimizer_at_decay, clip_grad_norm "
    "or iter_size changed?)"
  )
  more = f" (and {len(differences) - SHOWN} more)" if len(differences) > SHOWN else ""
  raise CheckpointDoesNotFit(
    f"{source} does not fit {what}: {'; '.join(differences[:SHOWN])}{more}; resume with "
    f"the run's own config or use another --workdir"
  )


class _QuietOrbaxFailures:
  """Silences the 'Event loop is closed' errors a failed orbax restore leaves behind.

  When one read of a damaged checkpoint fails, orbax closes its event loop while
  the other reads are still in flight; each then reports an unraisable
  RuntimeError (hundreds of tracebacks). Within this context they are dropped,
  anything else goes to the previous hook; after a `failed()` attempt, leaving
  waits until none has arrived for QUIET seconds (at most WAIT).
  """

  QUIET, WAIT = 0.5, 5.0

  def __init__(self):
    self._previous, self._last = None, None

  def failed(self):
    self._last = time.monotonic()

  def _hook(self, unraisable):
    if isinstance(unraisable.exc_value, RuntimeError) and "Event loop is closed" in str(
      unraisable.exc_value
    ):
      self._last = time.monotonic()
    else:
      self._previous(unraisable)

  def __enter__(self):
    self._previous, sys.unraisablehook = sys.unraisablehook, self._hook
    return self

  def __exit__(self, *exc_info):
    deadline = time.monotonic() + self.WAIT
    while self._last is not None and time.monotonic() < min(deadline, self._last + self.QUIET):
      time.sleep(0.05)
    sys.unraisablehook = self._previous
