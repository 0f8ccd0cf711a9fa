"""What both sides of a benchmark share: tasks, inputs and weights."""

import dataclasses
import os

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = dict(
  width=0.125, stages=(1, 1, 1, 1)
)  # the demo's small model (poolnet_jax/configs/demo.py)
PIXEL_STD = 50.0  # inputs are N(0, 50^2): the scale of BGR minus the mean
LEARNING_RATE = 5e-5
WEIGHT_DECAY = 5e-4
WEIGHT_SEED = 1


@dataclasses.dataclass(frozen=True)
class Task:
  """One timed thing: `kind` "infer" (forward, no gradients) or "train" (one optimizer step)."""

  kind: str
  model: str
  batch: int
  height: int
  width: int
  tiny: bool = False  # the model cut to TINY (`python -m bench --tiny`)

  @property
  def label(self):
    what = "inference" if self.kind == "infer" else "train step"
    tiny = " (tiny)" if self.tiny else ""
    return f"{what} {self.model}{tiny} {self.batch}x{self.height}x{self.width}"

  @property
  def images(self):
    return self.batch


def inputs(task, seed=0):
  """NHWC float32 images and {0, 1} labels, identical for both frameworks."""
  rng = np.random.default_rng(seed)
  images = rng.normal(0, PIXEL_STD, (task.batch, task.height, task.width, 3)).astype(np.float32)
  labels = (rng.uniform(size=(task.batch, task.height, task.width, 1)) > 0.5).astype(np.float32)
  return images, labels


def uint8_inputs(task, seed=0):
  """uint8 RGB images and {0, 255} labels: what the training step takes."""
  rng = np.random.default_rng(seed)
  images = rng.integers(0, 256, (task.batch, task.height, task.width, 3), dtype=np.uint8)
  labels = (rng.uniform(size=(task.batch, task.height, task.width, 1)) > 0.5).astype(np.uint8)
  return images, labels * np.uint8(255)


def weights_path(directory, model):
  return os.path.join(directory, f"{model}.pth")


def pin_cpus(threads):
  """Restricts this process to the first `threads` CPUs it may use; returns their ids."""
  cpus = sorted(os.sched_getaffinity(0))[:threads]
  os.sched_setaffinity(0, cpus)
  return cpus
