"""An epoch's training programs compiled before its first step: no compilation stalls.

Under XLA every distinct batch shape is a program of its own; at native size
(the paper's protocol) an epoch of DUTS-TR meets hundreds. The pipeline knows
the size of every coming step from the image headers (`step_shapes`,
data/pipeline.py), so `EpochWarmup` compiles, before the first update of the
run (a resumed one too) and of every epoch, the gradient program of every shape
the epoch's remaining calls will meet that is not compiled yet, and the update, through
`trainer.compile` (lower + compile on zero batches of those shapes), with a
progress bar, `workers` at once. JAX keeps the programs in its in-memory caches
(2048 entries) and writes them to the persistent cache, so the steps then compile
nothing, and a resumed run reads them back instead of compiling them.

`compile_ahead` (config): "auto" (on in native and buckets modes on GPU and TPU;
off on CPU and in fixed mode: BENCHMARKS.md, "Step shapes and compiling ahead"),
"true", "false".
"""

import concurrent.futures
import contextlib
import os
import time

from absl import logging
import jax
import numpy as np
import tqdm

from poolnet_jax.runtime import compilation

SETTINGS = {
  "auto": None,
  "true": True,
  "on": True,
  "1": True,
  "false": False,
  "off": False,
  "0": False,
}
SHAPED_MODES = ("native", "buckets")  # fixed mode has one shape: nothing to plan


def enabled(setting, data_mode, platform=None):
  """Whether to compile ahead: `setting` "auto", "true" or "false" (or a bool)."""
  key = str(setting).strip().lower()
  if key not in SETTINGS:
    raise ValueError(f"compile_ahead={setting!r} is not one of auto, true, false")
  if SETTINGS[key] is not None:
    return SETTINGS[key]
  platform = platform or jax.default_backend()
  return data_mode in SHAPED_MODES and platform != "cpu"


def default_workers(platform=None):
  """Programs compiled at once: 1 on CPU (XLA spreads one compilation over the cores
  already; 2 at once showed no consistent gain on 2 cores, BENCHMARKS.md), elsewhere up
  to 4 host threads (not measured here: no accelerator)."""
  if (platform or jax.default_backend()) == "cpu":
    return 1
  cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
  return max(1, min(4, cores or 1))


def zeros_batch(shape):
  """uint8 {"image": (B, H, W, 3), "label": (B, H, W, 1)} zeros of a step shape (B, H, W)."""
  b, h, w = shape
  return {"image": np.zeros((b, h, w, 3), np.uint8), "label": np.zeros((b, h, w, 1), np.uint8)}


class AheadCompiler:
  """Compiles a trainer's programs for step shapes, each (task, shape) once."""

  def __init__(self, trainer, workers=1, progress=True):
    self.trainer, self.workers, self.progress = trainer, max(1, int(workers)), progress
    self.compiled = set()  # (task, (B, H, W))

  def compile(self, state, sums, shapes):
    """Compiles what `shapes` ({task: [(B, H, W), ...]}) needs and is not compiled yet;
    returns the number of (task, shape) pairs compiled now."""
    todo = [(task, tuple(shape)) for task in sorted(shapes) for shape in shapes[task]]
    todo = [item for item in dict.fromkeys(todo) if item not in self.compiled]
    if not todo:
      return 0
    bar = tqdm.tqdm(
      total=len(todo),
      desc="compile ahead",
      unit="shape",
      leave=False,
      disable=not self.progress,
      dynamic_ncols=True,
    )
    try:
      self._one(state, sums, *todo[0])  # alone: the update program is compiled once
      bar.update(1)
      if self.workers == 1:
        for item in todo[1:]:
          self._one(state, sums, *item)
          bar.update(1)
      else:
        # jax.default_matmul_precision is a thread-local context: a pool thread would
        # compile without the caller's, and the call would then compile its own again.
        precision = jax.config.jax_default_matmul_precision
        with concurrent.futures.ThreadPoolExecutor(self.workers) as pool:
          for future in concurrent.futures.as_completed(
            [pool.submit(self._one, state, sums, *item, precision) for item in todo[1:]]
          ):
            future.result()
            bar.update(1)
    finally:
      bar.close()
    return len(todo)

  def _one(self, state, sums, task, shape, precision=None):
    batch = zeros_batch(shape)
    batch = self.trainer.put({task: batch} if self.trainer.model.edge else batch)
    with contextlib.nullcontext() if precision is None else jax.default_matmul_precision(precision):
      self.trainer.compile(state, sums, batch)
    self.compiled.add((task, shape))


def consumed_step(data_state):
  """The pipeline step of the next call: a TrainIterator's or a JointIterator's state."""
  return data_state["step"] if "step" in data_state else data_state["saliency"]["step"]


class EpochWarmup:
  """Before the first update of each epoch (and the first of the run), compiles the
  shapes of the calls up to the epoch's end (or the run's) not compiled yet."""

  def __init__(self, compiler, iterator, iter_size, updates_per_epoch, num_updates):
    self.compiler, self.iterator, self.iter_size = compiler, iterator, iter_size
    self.updates_per_epoch, self.num_updates = max(1, updates_per_epoch), num_updates
    self._next = None

  def before_update(self, update, state, sums, data_state):
    """Compiles ahead if `update` starts a window; `data_state` is the pipeline's state
    after the batches taken so far (the next call's batch: step `consumed_step`)."""
    if self._next is not None and update < self._next:
      return
    end = min((update // self.updates_per_epoch + 1) * self.updates_per_epoch, self.num_updates)
    self._next = end
    start = consumed_step(data_state)
    shapes = self.iterator.step_shapes(start, start + (end - update) * self.iter_size)
    shapes = shapes if isinstance(shapes, dict) else {"saliency": shapes}
    before, began = compilation.snapshot(), time.time()
    count = self.compiler.compile(state, sums, shapes)
    if count:
      logging.info(
        "compiled ahead %d step shape%s for updates %d-%d in %.1f s (%s)",
        count,
        "s" if count != 1 else "",
        update + 1,
        end,
        time.time() - began,
        compilation.summary(since=before),
      )


def from_config(config, trainer, iterator, updates_per_epoch, num_updates):
  """The run's EpochWarmup, or None when `config.compile_ahead` says off."""
  if not enabled(config.compile_ahead, config.data.mode):
    return None
  workers = config.compile_workers or default_workers()
  compiler = AheadCompiler(trainer, workers, progress=jax.process_index() == 0)
  return EpochWarmup(compiler, iterator, config.iter_size, updates_per_epoch, num_updates)
