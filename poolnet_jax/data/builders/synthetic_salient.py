"""`synthetic_salient`: procedural salient-object scenes, built here with no download.

    import poolnet_jax.data  # registers the builders
    import tensorflow_datasets as tfds

    tfds.builder("synthetic_salient", data_dir=D).download_and_prepare()  # default config
    train = tfds.data_source("synthetic_salient", data_dir=D, split="train")
    ex = train[0]  # image (H, W, 3), mask (H, W, 1), edge (H, W, 1) uint8; name bytes

    tfds.builder("synthetic_salient/small", data_dir=D)  # CPU demo: small images
    config = synthetic_config("mine", num_train=50, long_side=(96, 128), seed=3)
    tfds.builder("synthetic_salient", config=config, data_dir=D)

Configs (images per split train / validation / test, long side in pixels):
`default` 1000 / 100 / 100 at 320-400 (sizes like 300x400, 400x300, 320x320,
256x384); `small` 3000 / 200 / 200 at 128-160; `tiny` 48 / 8 / 8 at 64-96 (tests).
Example `i` of a split is drawn from `np.random.default_rng([seed, split_id, i])`
(train 0, validation 1, test 2), so a build is the same everywhere, whatever
the number of worker processes. See `poolnet_jax.data.synthetic` for what the
scenes hold. Read a custom config back with `tfds.data_source(...,
builder_kwargs={"config": config})` or `builder.as_data_source(split)`.

Build times on the 2-core development machine (tfds shows progress bars):
`default` about 27 s with the default 2 worker threads (about 50 s with
`tfds.builder(..., workers=1)`), `small` about 18 s (34 s).
"""

import collections
from concurrent import futures
import dataclasses
import functools
import os

import tensorflow_datasets as tfds

from poolnet_jax.data import decode
from poolnet_jax.data import synthetic
from poolnet_jax.data.builders import base

SPLIT_IDS = {"train": 0, "validation": 1, "test": 2}


@dataclasses.dataclass(eq=False)
class SyntheticConfig(tfds.core.BuilderConfig):
  num_train: int = 1000
  num_validation: int = 100
  num_test: int = 100
  long_side: tuple = (320, 400)
  seed: int = 0

  def count(self, split):
    return getattr(self, f"num_{split}")


def synthetic_config(
  name, num_train=1000, num_validation=100, num_test=100, long_side=(320, 400), seed=0
):
  """A custom config; its name keeps its build apart from the others in data_dir."""
  if not 36 <= long_side[0] <= long_side[1]:
    raise ValueError(f"long_side must be (low, high) with 36 <= low <= high, got {long_side}")
  return SyntheticConfig(
    name=name,
    num_train=num_train,
    num_validation=num_validation,
    num_test=num_test,
    long_side=tuple(long_side),
    seed=seed,
    description=f"{num_train}/{num_validation}/{num_test} scenes, long side "
    f"{long_side[0]}-{long_side[1]} px, seed {seed}",
  )


class SyntheticSalient(base.ArrayRecordBuilder):
  """Procedural images with exact salient-object masks and edge maps.

  `workers` (constructor keyword, default: up to 2 cores) threads draw the
  scenes (numpy and PIL release the GIL); results do not depend on it.
  """

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "First release."}
  BUILDER_CONFIGS = [
    synthetic_config("default", 1000, 100, 100, (320, 400)),
    synthetic_config("small", 3000, 200, 200, (128, 160)),
    synthetic_config("tiny", 48, 8, 8, (64, 96)),
  ]

  def __init__(self, *, workers=None, **kwargs):
    super().__init__(**kwargs)
    self.workers = default_workers() if workers is None else max(1, int(workers))

  def _info(self):
    return tfds.core.DatasetInfo(
      builder=self,
      description="Procedural salient-object scenes: textured, cluttered backgrounds with "
      "non-salient distractors and 1-3 salient objects; exact binary masks and "
      "contour edge maps.",
      features=tfds.features.FeaturesDict(
        {
          "image": tfds.features.Image(shape=(None, None, 3)),
          "mask": tfds.features.Image(shape=(None, None, 1)),
          "edge": tfds.features.Image(shape=(None, None, 1)),
          "name": tfds.features.Text(),
        }
      ),
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # nothing to download
    config = self.builder_config
    return {split: self._generate_examples(split) for split in SPLIT_IDS if config.count(split) > 0}

  def _generate_examples(self, split):
    config = self.builder_config
    draw = functools.partial(
      encoded_example, config.seed, SPLIT_IDS[split], long_side=config.long_side
    )
    indices = range(config.count(split))
    if self.workers == 1:
      yield from _named(split, map(draw, indices))
    else:
      yield from _named(split, ordered_map(draw, indices, self.workers))


def default_workers():
  cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
  return max(1, min(2, cores or 1))


def ordered_map(fn, items, workers, ahead=16):
  """fn over items in `workers` threads, results in order, at most `ahead` in flight."""
  with futures.ThreadPoolExecutor(workers) as pool:
    pending = collections.deque()
    for item in items:
      pending.append(pool.submit(fn, item))
      if len(pending) >= ahead:
        yield pending.popleft().result()
    while pending:
      yield pending.popleft().result()


def _named(split, examples):
  for index, example in enumerate(examples):
    name = f"{split}_{index:06d}"
    yield name, {**example, "name": name}


def encoded_example(seed, split_id, index, long_side):
  """PNG-encoded image, mask and edge of one scene."""
  rng = synthetic.scene_rng(seed, split_id, index)
  scene = synthetic.make_scene(rng, *synthetic.sample_size(rng, long_side))
  return {
    "image": decode.encode_png(scene.image),
    "mask": decode.encode_png(scene.mask),
    "edge": decode.encode_png(scene.edge),
  }
