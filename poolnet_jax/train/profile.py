"""A `jax.profiler` trace of chosen updates, for TensorBoard's profile tab or Perfetto.

`profile_steps=(first, last)` traces updates first..last (counted as the logs count
them, from 1) on process 0 into the run's TensorBoard folder: jax.profiler writes
`plugins/profile/<time>/<host>.xplane.pb` (TensorBoard with the `xprof` plugin) and
`<host>.trace.json.gz` (ui.perfetto.dev). Every update is a step annotation, so the
profile tools show the time per update. The trace ends after the devices finish its
last update: the one host wait it adds, once.
"""

import contextlib
import os

from absl import logging
import jax


class UpdateTrace:
  """Starts the trace before update `first`, stops it after update `last`."""

  def __init__(self, steps, log_dir, enabled=True):
    self.first, self.last = tuple(steps) if steps else (0, -1)
    self.log_dir = log_dir
    self.enabled = enabled and bool(steps)
    self.active = False
    self.started = None

  def step(self, update):
    """The context of update number `update` (1-based): traced when in the window."""
    if self.enabled and not self.active and self.first <= update <= self.last:
      os.makedirs(self.log_dir, exist_ok=True)
      jax.profiler.start_trace(self.log_dir)
      self.active, self.started = True, update
    if not self.active:
      return contextlib.nullcontext()
    return jax.profiler.StepTraceAnnotation("update", step_num=update)

  def after(self, update, state):
    """Stops the trace once update `last` is done on the devices."""
    if self.active and update >= self.last:
      jax.block_until_ready(state)
      self.stop()
      logging.info(
        "profile of updates %d-%d: %s", self.started, update, os.path.join(self.log_dir, "plugins")
      )

  def stop(self):
    if self.active:
      jax.profiler.stop_trace()
      self.active = False
      self.enabled = False
