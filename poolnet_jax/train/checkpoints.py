"""Training checkpoints with orbax: the last N, asynchronous, exactly resumable.

A checkpoint holds the train state (step, params, batch_stats, optimizer state)
and the data iterator's state, so a resumed run sees the data it would have
seen. orbax writes each step to a temporary folder and renames it when
complete, so a run killed during a save leaves the previous checkpoint intact.
The best model by validation MAE is exported separately (see loop.py).
"""

import logging

import jax
import numpy as np
import orbax.checkpoint as ocp


def _state_tree(state):
  return {"step": state.step, "params": state.params, "batch_stats": state.batch_stats,
          "opt_state": state.opt_state}


def _flat(tree):
  """{"a:b:0": leaf}: a flat dict orbax stores and restores whatever optax's state types."""
  return {":".join(_key(k) for k in path): np.array(leaf, copy=True)  # copies: see save()
          for path, leaf in jax.tree_util.tree_leaves_with_path(tree)}


def _key(entry):
  for attribute in ("key", "name", "idx"):
    if hasattr(entry, attribute):
      return str(getattr(entry, attribute))
  return str(entry)


class Checkpoints:
  """orbax CheckpointManager over {state, data iterator state}."""

  def __init__(self, directory, keep=3, asynchronous=True):
    options = ocp.CheckpointManagerOptions(
        max_to_keep=keep, create=True, enable_async_checkpointing=asynchronous)
    self.manager = ocp.CheckpointManager(directory, options=options,
                                         item_names=("state", "data"))

  def latest_step(self):
    return self.manager.latest_step()

  def save(self, step, state, data_state, force=False):
    """Saves host-side `state` (a TrainState) and the iterator state (JSON-able)."""
    # _flat copies: on CPU np.asarray may alias buffers the next (donating) step reuses.
    tree = _flat(_state_tree(state))
    saved = self.manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(tree), data=ocp.args.JsonSave(data_state)), force=force)
    if saved:
      logging.info("checkpoint of step %d started", step)
    return saved

  def restore(self, state, step=None):
    """(state, data_state) of `step` (default: latest), shaped like `state`."""
    step = self.latest_step() if step is None else step
    target = _state_tree(state)
    restored = self.manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(_flat(target)), data=ocp.args.JsonRestore()))
    flat = restored["state"]
    tree = jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(target),
                                        [flat[key] for key in _flat(target)])
    state = state.replace(step=tree["step"], params=tree["params"],
                          batch_stats=tree["batch_stats"], opt_state=tree["opt_state"])
    return state, restored["data"]

  def wait(self):
    self.manager.wait_until_finished()

  def close(self):
    self.manager.close()
