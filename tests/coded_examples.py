"""Coded examples for the pipeline tests: a batch tells what it holds (red = example id,
green = column or a constant, blue = row or a constant); BGR minus the mean is undone by
hand with the original's mean."""

import numpy as np

from poolnet_jax.train import step as step_lib

MEAN_BGR = np.array([104.00699, 116.66877, 122.67892], np.float32)


def coded(i, h, w, mask=None, constant_gb=None):
  """Example i: R = i, G = column, B = row (or G, B = constant_gb), mask as given or a pattern."""
  rgb = np.zeros((h, w, 3), np.uint8)
  rgb[..., 0] = i
  if constant_gb is None:
    rgb[..., 1] = np.arange(w)[None, :]
    rgb[..., 2] = np.arange(h)[:, None]
  else:
    rgb[..., 1], rgb[..., 2] = constant_gb
  if mask is None:
    mask = np.zeros((h, w, 1), np.uint8)
    mask[:, :3] = 255
    mask[0, :] = 128
  return {"image": rgb, "mask": mask, "edge": mask, "name": f"ex{i}".encode()}


def sized_source(sizes):
  """One example per (H, W) in `sizes`, its id in red and its size in green / blue."""
  return [coded(i, h, w, constant_gb=(h, w)) for i, (h, w) in enumerate(sizes)]


def rgb_of(x):
  """Preprocessed (..., H, W, 3) back to RGB floats."""
  return (x + MEAN_BGR)[..., ::-1]


def ids(batch):
  return np.rint(rgb_of(batch["image"])[..., 0, 0, 0]).astype(int).ravel().tolist()


def device_view(batch):
  """A uint8 batch [B, H, W, C] as the training step sees it (step.device_inputs, bit-equal to
  image.preprocess and label / 255), shaped [B, 1, H, W, C] as one image per device."""
  if "image" not in batch:
    return {task: device_view(part) for task, part in batch.items()}
  assert batch["image"].dtype == np.uint8 and batch["label"].dtype == np.uint8
  image, label = (np.asarray(x) for x in step_lib.device_inputs(batch))
  return {"image": image[:, None], "label": label[:, None]}


def take(it, n):
  return [device_view(next(it)) for _ in range(n)]
