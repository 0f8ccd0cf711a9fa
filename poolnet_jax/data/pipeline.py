"""The training input pipeline on grain: shuffle, group by size, decode, flip, resize, batch, shard.

    it = train_iterator(tfds.data_source("duts", split="train"), mode="native")
    batch = next(it)  # {"image": [local batch, H, W, 3] uint8 RGB,
                      #  "label": [local batch, H, W, 1] uint8 0..255}
    state = it.get_state(); it.set_state(state)  # exact resume, JSON-able

How the global steps are made (B = batch_size over all devices of all processes):
1. Epoch e visits the N examples in grain's permutation of epoch e
   (`MapDataset.shuffle(seed).repeat()`: a new one every epoch) and flips each
   with probability 1/2 by a generator seeded with (seed, e). The last N % B of
   the permutation sit the epoch out, so an epoch is N // B steps.
2. Every image of a step is brought to the step's size:
   - `fixed`: `size`;
   - `buckets`: the (H, W) of `buckets` nearest the image's aspect ratio;
   - `native`: the image's own size (scaled up, aspect kept, if a side is
     below `min_size`): with B = 1 the paper's protocol, nothing resized.
     `native_multiple` M > 0 (opt-in) rounds each side to the nearest multiple
     of M (never below `min_size`), so that far fewer sizes, hence compiled
     programs, occur: a side changes by at most M / 2 pixels. With
     `native_max_rescale` r > 0 as well, the sizes are chosen for the whole
     dataset instead (`train_sizes.fewest_sizes`: few multiples of M, each side within r
     of the image's own, read from the headers at any batch size).
   With B > 1, `native` and `buckets` group the permutation by that target
   size (read once from the image headers when the iterator is made): each
   size gives steps of B in permutation order; what remains of all sizes is
   sorted by aspect ratio and cut into steps of B, each resized to the size
   of its middle member (a small aspect change, only for images of rare
   sizes). The epoch's steps are then shuffled. With B = 1 the sizes are
   read too if `plan_sizes` (the order stays the permutation's).
   `step_shapes(start, stop)` / `epoch_shapes(epoch)` give the distinct batch
   shapes of those steps before any is loaded (to compile them ahead).
3. Process p of P takes elements p, p + P, ... of the step-major stream
   (grain slicing `[p::P]`): it decodes only its shard, its part of every
   step has the step's size, and it batches them as [local batch, ...] (the
   trainer splits that over the local devices, train/parallel.py).

Resizing is bilinear with aligned corners (numpy, `transforms`), rounded back
to uint8; edge labels are resized, then every value > 127.5 set to 255 (the
rest kept, as the original: its balanced loss ignores them). Batches stay uint8:
BGR-minus-mean and label / 255 run on the device, inside the training step.
An example that fails to load (a DecodeError naming the file, a label whose
size differs from its image, anything the source raises) is logged once,
counted and replaced by the same slot of the next step: a bad file never
stops training; a clear error if nothing loads.
"""

from absl import logging
import grain
import jax
import numpy as np

from poolnet_jax.data import decode
from poolnet_jax.data import step_plan
from poolnet_jax.data import train_sizes
from poolnet_jax.data import transforms

MODES = train_sizes.MODES
FIRST_FAILURES = 20  # failures before any success after which the data is declared unusable
MAX_SUBSTITUTES = 1000


class MissingLabelError(ValueError):
  """The source has no label of the requested kind: a configuration error, never skipped."""


class _Loader:
  """Plan element -> {"image", "label"} uint8, a failing example replaced by another."""

  def __init__(self, source, label_key, target, plan):
    self.source, self.label_key, self.target, self.plan = source, label_key, target, plan
    self.is_edge = label_key == "edge"
    self.bad = {}  # source index -> reason
    self.loaded = False

  def read(self, index):
    example = self.source[index]
    name = transforms.example_name(example, index)
    if self.label_key not in example:
      raise MissingLabelError(
        f"{name}: the source gives no {self.label_key!r} label (its keys: {sorted(example)})"
      )
    rgb = transforms.as_rgb(example["image"], name)
    label = transforms.as_label(example[self.label_key], name)
    if label.shape != rgb.shape[:2]:
      raise decode.DecodeError(
        f"{name}: {self.label_key} size {label.shape[1]}x{label.shape[0]} "
        f"differs from its image's {rgb.shape[1]}x{rgb.shape[0]}"
      )
    return rgb, label, name

  def __call__(self, item):
    for attempt in range(MAX_SUBSTITUTES):
      candidate = (
        item if not attempt else self.plan[item["element"] + attempt * self.plan.batch_size]
      )
      if candidate["index"] in self.bad:
        continue
      try:
        rgb, label, _ = self.read(candidate["index"])
      except MissingLabelError:
        raise
      except Exception as error:  # pylint: disable=broad-except  (never stop training)
        self._failed(candidate["index"], error)
        continue
      self.loaded = True
      size = item["size"] or self.target(rgb.shape)
      image, label = transforms.prepare(rgb, label, size, candidate["flip"], self.is_edge)
      return {"image": image, "label": label}
    raise RuntimeError(
      f"{MAX_SUBSTITUTES} training examples in a row failed to load; "
      f"first reasons: {list(self.bad.values())[:3]}"
    )

  def _failed(self, index, error):
    reason = (
      str(error)
      if isinstance(error, decode.DecodeError)
      else (f"example {index}: {type(error).__name__}: {error}")
    )
    self.bad[index] = reason
    logging.warning(
      "training data: skipping %s (%d unusable so far, each replaced by another example)",
      reason,
      len(self.bad),
    )
    if len(self.bad) >= len(self.plan.usable) or (
      not self.loaded and len(self.bad) >= FIRST_FAILURES
    ):
      raise RuntimeError(
        f"no training example loads: {len(self.bad)} tried, all failed "
        f"(first: {'; '.join(list(self.bad.values())[:3])})"
      )


def _stack(examples):
  """grain batch_fn: examples -> {"image", "label"} uint8 [local batch, H, W, C]."""
  return {key: np.stack([e[key] for e in examples]) for key in ("image", "label")}


class TrainIterator:
  """Infinite iterator of this process's batches, resumable from `get_state()`.

  The state is the number of steps taken (plus what the stream depends on,
  checked on restore), the same on every process and for any worker count:
  `set_state` restarts grain at that step of the (random-access) stream.
  `skipped` maps source indices that failed to load to the reason (in this
  process; with worker_count > 0 the workers log theirs).
  """

  def __init__(self, batches, loader, info, read_options, worker_count):
    self._batches, self._loader, self.info = batches, loader, info
    self._plan = loader.plan
    self._read_options, self._worker_count = read_options, worker_count
    self._step, self._iterator = 0, None

  @property
  def steps_per_epoch(self):
    return self.info["steps_per_epoch"]

  @property
  def local_batch_size(self):
    return self.info["batch_size"] // self.info["process_count"]

  def planned_steps(self, start, stop):
    """Global steps [start, stop) (step k: the k-th batch from the start, of all processes)
    as lists of (source index, (H, W) it is trained at); needs the image sizes (read at
    batch > 1, or with plan_sizes) except in fixed mode."""
    return self._plan.steps(start, stop)

  def step_shapes(self, start, stop):
    """Sorted distinct (local batch, H, W) of the batches of global steps [start, stop)."""
    return sorted(
      {(self.local_batch_size,) + tuple(step[0][1]) for step in self.planned_steps(start, stop)}
    )

  def epoch_shapes(self, epoch):
    """Sorted distinct (local batch, H, W) of epoch `epoch` (0 = the first)."""
    return self.step_shapes(epoch * self.steps_per_epoch, (epoch + 1) * self.steps_per_epoch)

  @property
  def skipped(self):
    return dict(self._loader.bad)

  def __iter__(self):
    return self

  def __next__(self):
    if self._iterator is None:
      dataset = self._batches[self._step :].to_iter_dataset(self._read_options)
      if self._worker_count:  # grain's workers read absl flags: the entry point parses them
        dataset = dataset.mp_prefetch(grain.MultiprocessingOptions(num_workers=self._worker_count))
      self._iterator = iter(dataset)
    batch = next(self._iterator)
    self._step += 1
    return batch

  def close(self):
    """Stops grain's prefetch threads or worker processes (restarted by the next `next`)."""
    if self._iterator is not None and hasattr(self._iterator, "close"):
      self._iterator.close()
    self._iterator = None

  def get_state(self):
    return {"step": self._step, **self.info}

  def set_state(self, state):
    for key, value in self.info.items():
      if key in state and state[key] != value:
        logging.warning(
          "data state saved with %s=%r, now %r: the resumed run sees other "
          "data than the saved one would have",
          key,
          state[key],
          value,
        )
    if not isinstance(state.get("step"), int):
      raise ValueError(f"not a data state of this pipeline (no integer 'step'): {state!r}")
    self.close()
    self._step = state["step"]


def _topology(batch_size, num_devices, process_index, process_count):
  num_devices = num_devices or jax.local_device_count()
  process_index = jax.process_index() if process_index is None else process_index
  process_count = jax.process_count() if process_count is None else process_count
  if not 0 <= process_index < process_count:
    raise ValueError(f"process_index {process_index} not in [0, {process_count})")
  if batch_size < 1 or batch_size % (num_devices * process_count):
    raise ValueError(
      f"batch_size {batch_size} (global) is not a positive multiple of the "
      f"{num_devices} local devices x {process_count} processes"
    )
  return num_devices, process_index, process_count


def train_iterator(
  source,
  *,
  label_key="mask",
  mode="native",
  batch_size=1,
  num_devices=None,
  process_index=None,
  process_count=None,
  size=(320, 320),
  buckets=((320, 320), (288, 384), (384, 288)),
  flip=True,
  seed=0,
  shuffle=True,
  worker_count=0,
  min_size=0,
  read_threads=1,
  prefetch=2,
  native_multiple=0,
  native_max_rescale=0.0,
  plan_sizes=False,
):
  """An infinite, checkpointable TrainIterator of this process's training batches.

  `batch_size` is global (all devices of all processes); `num_devices` the
  local device count (default jax.local_device_count()); process index and
  count default to jax's. `min_size`: in native mode, images with a side
  below it are scaled up (pass the model's `min_input_size()`).
  `native_multiple` > 0: native sizes rounded to multiples of it (0: exact);
  `native_max_rescale` > 0 with it: few multiples chosen for the whole dataset, each
  side within that relative change of the image's own.
  `plan_sizes`: read the image sizes also at batch 1 (for `step_shapes`).
  `read_threads` / `prefetch`: grain's ReadOptions (batches made ahead).
  """
  num_devices, process_index, process_count = _topology(
    batch_size, num_devices, process_index, process_count
  )
  target = train_sizes.TrainSize(mode, size, buckets, min_size, native_multiple, native_max_rescale)
  usable, sizes = step_plan.usable_examples(
    source, mode != "fixed" and (batch_size > 1 or plan_sizes or target.covers)
  )
  if len(usable) < batch_size:
    raise ValueError(f"batch_size {batch_size} exceeds the {len(usable)} training examples")
  order = grain.MapDataset.range(len(usable))
  order = (order.shuffle(seed=seed) if shuffle else order).repeat()
  plan = step_plan.StepPlan(order, usable, sizes, target, batch_size, seed, flip, shuffle)
  loader = _Loader(source, label_key, target, plan)
  batches = (
    plan[process_index::process_count]
    .map(loader)
    .batch(batch_size // process_count, drop_remainder=True, batch_fn=_stack)
  )
  info = {
    "mode": mode,
    "batch_size": batch_size,
    "seed": seed,
    "examples": len(usable),
    "steps_per_epoch": plan.steps_per_epoch,
    "process_count": process_count,
  }
  if native_multiple and mode == "native":
    info["native_multiple"] = native_multiple
  if target.covers:
    info["native_max_rescale"] = native_max_rescale
  read_options = grain.ReadOptions(num_threads=read_threads, prefetch_buffer_size=prefetch)
  return TrainIterator(batches, loader, info, read_options, worker_count)


class JointIterator:
  """One saliency and one edge batch per step, for the joint (edge) models."""

  def __init__(self, saliency, edge):
    self.saliency, self.edge = saliency, edge

  def __iter__(self):
    return self

  def __next__(self):
    return {"saliency": next(self.saliency), "edge": next(self.edge)}

  def get_state(self):
    return {"saliency": self.saliency.get_state(), "edge": self.edge.get_state()}

  def set_state(self, state):
    self.saliency.set_state(state["saliency"])
    self.edge.set_state(state["edge"])

  def step_shapes(self, start, stop):
    """{"edge": [...], "saliency": [...]}: each stream's TrainIterator.step_shapes (a call
    takes one step of each, so global step k of both streams meet in call k)."""
    return {
      "edge": self.edge.step_shapes(start, stop),
      "saliency": self.saliency.step_shapes(start, stop),
    }

  def epoch_shapes(self, epoch):
    """{"edge": [...], "saliency": [...]}: epoch `epoch` of each stream (of its own length)."""
    return {"edge": self.edge.epoch_shapes(epoch), "saliency": self.saliency.epoch_shapes(epoch)}


def joint_iterator(saliency_source, edge_source, *, seed=0, flip=True, edge_flip=False, **kwargs):
  """JointIterator of train_iterator(saliency, "mask") and train_iterator(edges, "edge").

  Edges are not flipped by default: the original flips saliency pairs only
  (its edge set is already augmented). The edge stream uses seed + 1.
  """
  return JointIterator(
    train_iterator(saliency_source, label_key="mask", seed=seed, flip=flip, **kwargs),
    train_iterator(edge_source, label_key="edge", seed=seed + 1, flip=edge_flip, **kwargs),
  )
