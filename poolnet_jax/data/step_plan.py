"""Which example trains in which slot of which global step, at which size, before any
image is loaded: the plan the training pipeline (pipeline.py) reads and loads.

    usable, sizes = usable_examples(source, need_sizes=True)  # sizes from the headers
    plan = StepPlan(order, usable, sizes, target, batch_size, seed, flip, shuffle)
    plan[j]  # {"index", "flip", "size", "element"} of element j of the step-major stream
    plan.steps(0, 10)  # [[(source index, (H, W)), ...] per step]

pipeline.py's docstring says how the steps of an epoch are laid out.
"""

import sys
import time

from absl import logging
import grain
import numpy as np

from poolnet_jax.data import transforms


class StepPlan(grain.MapDataset):
  """The flat, step-major stream: element j = slot j % B of global step j // B.

  Each element is {"index": source index, "flip": bool, "size": (H, W) of its
  step or None (the image's own target), "element": j}.
  """

  def __init__(self, order, usable, sizes, target, batch_size, seed, flip, shuffle):
    super().__init__(order)
    self.usable, self.target, self.batch_size = usable, target, batch_size
    self.mode = target.mode
    self.seed, self.flip, self.shuffle = seed, flip, shuffle
    self.keys = None if sizes is None else target.plan(sizes)
    self.aspects = None if sizes is None else [(s[1] / s[0], s[0] * s[1]) for s in sizes]
    self.steps_per_epoch = len(usable) // batch_size
    self._epochs = {}

  def __len__(self):
    return sys.maxsize

  def __getitem__(self, index):
    if isinstance(index, slice):
      return self.slice(index)
    step, slot = divmod(index, self.batch_size)
    epoch, step = divmod(step, self.steps_per_epoch)
    steps, flips = self._epoch(epoch)
    position, size = steps[step][slot]
    return {
      "index": int(self.usable[position]),
      "flip": bool(flips[position]),
      "size": size,
      "element": index,
    }

  def _epoch(self, epoch):
    layout = self._epochs.get(epoch)
    if layout is None:  # two threads may both compute it: the same result
      layout = self._layout(epoch)
      self._epochs = {**{e: v for e, v in self._epochs.items() if e == epoch - 1}, epoch: layout}
    return layout

  def _layout(self, epoch):
    """(steps of the epoch as lists of (position, size), flip of every position)."""
    n, b = len(self.usable), self.batch_size
    order = np.fromiter((self._parent[epoch * n + i] for i in range(n)), np.int64, n)
    rng = np.random.default_rng([self.seed, epoch])
    flips = rng.random(n) < 0.5 if self.flip else np.zeros(n, bool)
    order = order[: n - n % b]
    if self.keys is None or b == 1:  # one image a step: at its own target size
      key = (lambda p: self.keys[p]) if self.target.covers else (lambda p: None)
      return [[(p, key(p)) for p in order[s : s + b]] for s in range(0, len(order), b)], flips
    groups = {}
    for position in order:
      groups.setdefault(self.keys[position], []).append(position)
    steps, rest = [], []
    for key, members in groups.items():
      full = len(members) - len(members) % b
      steps += [[(p, key) for p in members[s : s + b]] for s in range(0, full, b)]
      rest += members[full:]
    rest.sort(key=lambda p: self.aspects[p])  # stable: ties keep the permutation's order
    for s in range(0, len(rest), b):
      chunk = rest[s : s + b]
      key = self.keys[chunk[len(chunk) // 2]]
      steps.append([(p, key) for p in chunk])
    if self.shuffle:
      steps = [steps[i] for i in rng.permutation(len(steps))]
    return steps, flips

  def steps(self, start, stop):
    """Global steps [start, stop) as lists of (source index, (H, W) it is trained at),
    without loading an image."""
    if self.keys is None and self.mode != "fixed":
      raise ValueError(
        "the image sizes were not read (train_iterator(..., plan_sizes=True) reads them at batch 1)"
      )
    steps = []
    for step in range(start, stop):
      epoch, step = divmod(step, self.steps_per_epoch)
      steps.append(
        [
          (int(self.usable[p]), size or (self.keys[p] if self.keys else self.target.size))
          for p, size in self._epoch(epoch)[0][step]
        ]
      )
    return steps


def usable_examples(source, need_sizes):
  """(source indices to train on, their (H, W) or None); unreadable headers left out."""
  if len(source) == 0:
    raise ValueError(f"the training source {source!r} is empty")
  if not need_sizes:
    return np.arange(len(source)), None
  start, read = time.time(), transforms.SizeReader(source)
  usable, sizes, bad = [], [], []
  for index in range(len(source)):
    try:
      sizes.append(read(index))
      usable.append(index)
    except Exception as error:  # pylint: disable=broad-except
      bad.append(str(error))
      logging.warning("training data: leaving out %s", error)
  if not usable:
    raise ValueError(f"no readable image in the training source {source!r} ({bad[:3]})")
  logging.info(
    "read %d image sizes in %.1f s: %d distinct, %d unreadable left out",
    len(usable),
    time.time() - start,
    len(set(sizes)),
    len(bad),
  )
  return np.asarray(usable), sizes
