"""The training input pipeline on grain: shuffle, decode, flip, resize, batch, shard.

    it = train_iterator(tfds.data_source("duts", split="train"), mode="native")
    batch = next(it)  # {"image": [devices, per_device, H, W, 3] float32 (BGR - mean),
                      #  "label": [devices, per_device, H, W, 1] float32 in [0, 1]}
    state = it.get_state(); it.set_state(state)  # exact resume (JSON-able)

Global step `s` reads the examples `s * B ... s * B + B - 1` (B the global
batch) of one deterministic stream: the source shuffled afresh every epoch,
each example flipped or not by a generator seeded from the seed and its
position. Process `p` of `P` takes its contiguous slice of those B, so any
number of hosts and devices sees the same global batches, and each host
decodes only its own images (plus the step's first, which sets the size).

One step's images must share a size:
- `fixed`: every image resized to `size`;
- `buckets`: resized to the bucket (H, W) nearest the step's first image in
  aspect ratio;
- `native`: the image's own size (the paper's batch 1); with several images
  per step they take the size of the step's first image.
Saliency labels are resized as floats (bilinear); edge labels are resized,
then set to 1 where > 0.5 and 0 elsewhere, as the original does.
An example that fails to decode is skipped (logged, counted) and the next
one of the stream takes its place: a bad file never stops training.
"""

import sys

from absl import logging
import grain
import jax
import numpy as np
from PIL import Image

from poolnet_jax import image as image_lib
from poolnet_jax.data import decode

MODES = ("native", "fixed", "buckets")
MAX_BAD_IN_A_ROW = 100


class _Examples:
  """The shuffled, flipped, infinite example stream; stream[i] -> (image, label) uint8."""

  def __init__(self, source, label_key, flip, seed, shuffle):
    self.label_key, self.skipped = label_key, 0
    self.size = len(source)
    if self.size == 0:
      raise ValueError(f"the training source {source!r} is empty")
    stream = grain.MapDataset.source(source)
    stream = stream.shuffle(seed=seed) if shuffle else stream
    stream = stream.repeat(None)
    if flip:
      stream = stream.random_map(_random_flip, seed=seed + 1)
    self.stream = stream

  def __getitem__(self, index):
    for offset in range(MAX_BAD_IN_A_ROW):
      try:
        example = self.stream[index + offset * 7919]  # a different image, same epoch region
      except decode.DecodeError as error:
        self.skipped += 1
        logging.warning("skipping an unreadable training example (%d so far): %s",
                        self.skipped, error)
        continue
      return example["image"], example[self.label_key]
    raise RuntimeError(f"{MAX_BAD_IN_A_ROW} unreadable training examples in a row; "
                       "check the dataset (see the warnings above)")


def _random_flip(example, rng):
  if rng.random() < 0.5:
    example = {**example, "image": example["image"][:, ::-1]}
    for key in ("mask", "edge"):
      if key in example:
        example[key] = example[key][:, ::-1]
  return example


def _resize_image(rgb, size):
  if rgb.shape[:2] == tuple(size):
    return rgb
  return np.asarray(Image.fromarray(rgb).resize(size[::-1], Image.BILINEAR))


def _resize_label(label, size, is_edge):
  label = label[..., 0].astype(np.float32) / 255.0
  if label.shape != tuple(size):
    label = np.asarray(Image.fromarray(label, mode="F").resize(size[::-1], Image.BILINEAR))
  if is_edge:
    label = (label > 0.5).astype(np.float32)
  return label[..., None]


def _nearest_bucket(shape, buckets):
  aspect = shape[1] / shape[0]
  return min(buckets, key=lambda b: abs(np.log(b[1] / b[0]) - np.log(aspect)))


class _Batches:
  """Global step -> this process's part of the global batch, shaped for pmap."""

  def __init__(self, examples, mode, global_batch, local_devices, size, buckets):
    if mode not in MODES:
      raise ValueError(f"data.mode must be one of {MODES}, got {mode!r}")
    self.examples, self.mode, self.global_batch = examples, mode, global_batch
    self.local_devices, self.size, self.buckets = local_devices, tuple(size), buckets

  def target_size(self, first_shape):
    if self.mode == "fixed":
      return self.size
    if self.mode == "buckets":
      return tuple(_nearest_bucket(first_shape, self.buckets))
    return tuple(first_shape[:2])

  def __call__(self, step, local_batch, process_index):
    start = step * self.global_batch
    first_image, _ = self.examples[start]
    size = self.target_size(first_image.shape)
    is_edge = self.examples.label_key == "edge"
    images, labels = [], []
    for k in range(local_batch):
      image, label = self.examples[start + process_index * local_batch + k]
      images.append(image_lib.preprocess(_resize_image(image, size)))
      labels.append(_resize_label(label, size, is_edge))
    shape = (self.local_devices, local_batch // self.local_devices)
    return {"image": np.stack(images).reshape(shape + images[0].shape),
            "label": np.stack(labels).reshape(shape + labels[0].shape)}


def train_iterator(source, *, label_key="mask", mode="native", batch_size=1, num_devices=None,
                   process_index=None, process_count=None, size=(320, 320),
                   buckets=((320, 320), (288, 384), (384, 288)), flip=True, seed=0, shuffle=True,
                   worker_count=0):
  """An infinite, checkpointable iterator of this process's training batches.

  `batch_size` is global (all devices of all processes); `num_devices` the
  local device count (default jax.local_device_count()).
  """
  num_devices = num_devices or jax.local_device_count()
  process_index = jax.process_index() if process_index is None else process_index
  process_count = jax.process_count() if process_count is None else process_count
  if batch_size % (num_devices * process_count):
    raise ValueError(f"batch_size {batch_size} is not a multiple of the {num_devices} local "
                     f"devices x {process_count} processes")
  local_batch = batch_size // process_count
  examples = _Examples(source, label_key, flip, seed, shuffle)
  batches = _Batches(examples, mode, batch_size, num_devices, size, buckets)
  dataset = grain.MapDataset.range(sys.maxsize).map(
      lambda step: batches(step, local_batch, process_index))
  iterator = dataset.to_iter_dataset(grain.ReadOptions(num_threads=0, prefetch_buffer_size=0))
  if worker_count:
    iterator = iterator.mp_prefetch(grain.MultiprocessingOptions(num_workers=worker_count))
  return iter(iterator)


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


def joint_iterator(saliency_source, edge_source, *, seed=0, **kwargs):
  return JointIterator(train_iterator(saliency_source, label_key="mask", seed=seed, **kwargs),
                       train_iterator(edge_source, label_key="edge", seed=seed + 7, **kwargs))
