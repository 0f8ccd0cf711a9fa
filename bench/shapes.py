"""Distinct training step shapes per epoch at native size, with and without size rounding.

    python -m bench.shapes [--sizes FILE] [--edge_sizes FILE] [--compile N] [--ahead K]

Every distinct (batch, H, W) of a step is one compiled program. For a size
list (a DUTS-TR-like one made here, or `--sizes FILE` of `H,W` lines) this
prints the distinct step shapes of one epoch as the pipeline plans it
(`pipeline.train_iterator(...).epoch_shapes`, on a source that only gives
image sizes) for native exact sizes and `native_multiple` M in (8, 16, 32), at
batch 1 and batch 8 (grouped by size as the pipeline groups), with the largest
relative change of an image's side against its exact native size (rounding,
and at batch 8 the resizing of leftover images to their step's size); then the
programs of a joint (edge + saliency) epoch of 30,000 calls: distinct edge
shapes + distinct saliency shapes (an edge list like BSDS500 + PASCAL-Context,
or `--edge_sizes FILE`).

`--compile N`: compile seconds of the full ResNet-50 train step (the gradient
program per shape, the update once) for the first N shapes of the list's exact
epoch, cold (no persistent cache). `--ahead K [--tiny]`: K shapes trained
one update each, compiled on demand (as a run without compile_ahead does) against
compiled ahead with 1 and 2 workers (train/warmup.py; `--workers` sets the runs and
their order): seconds to the first update, to the end, and compile seconds.

Rows `M, r = 6 %`: sizes chosen for the whole dataset (`data.native_max_rescale`,
data/train_sizes.py), each side within r of its own, with the fewest possible at M = 16
(the set-cover optimum, scipy MILP). The last line is `shapes per epoch: exact=N m16=M
joint_exact=J m16_r6=F m16_r6_fewest=O` (batch 1).
"""

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from bench import common
from poolnet_jax import runtime
from poolnet_jax.data import pipeline, train_sizes, transforms
from poolnet_jax.models import create_model
from poolnet_jax.runtime import compilation

MULTIPLES = (0, 8, 16, 32)
BATCHES = (1, 8)
MIN_SIZE = 111  # PoolNet ResNet-50's smallest input side (model.min_input_size())
JOINT_CALLS = 30_000  # the original's joint epoch (poolnet_jax/configs/resnet50_edge.py)
MAX_RESCALE = 0.06  # the bound on a side's change


def duts_like_sizes(count=10_553, seed=0):
  """(H, W) like DUTS-TR's: 99 % with a longest side of 400, the other side 40 % at a
  common aspect (300, 267, 225 px: 4:3, 3:2, 16:9) and 60 % spread (normal, mean 290,
  sd 50, within 150-400); 1 % with a longest side of 200-399, the other side 60-100 % of
  it; 75 % landscape."""
  rng = np.random.default_rng(seed)
  longest = np.where(rng.random(count) < 0.99, 400, rng.integers(200, 400, count))
  common_side = rng.choice([300, 267, 225], count, p=[0.625, 0.25, 0.125])
  spread = np.clip(np.rint(rng.normal(290, 50, count)), 150, 400).astype(int)
  other = np.where(rng.random(count) < 0.4, common_side, spread)
  other = np.where(
    longest == 400, other, np.rint(longest * rng.uniform(0.6, 1.0, count)).astype(int)
  )
  landscape = rng.random(count) < 0.75
  return [(int(o), int(l)) if w else (int(l), int(o)) for o, l, w in zip(other, longest, landscape)]


def edge_like_sizes(seed=1):
  """(H, W) like BSDS500 + PASCAL-Context (the joint model's edge set): 9,600 BSDS
  entries (HED's 300 train+val images x 16 rotations x 2 flips, each given its unrotated
  size) at 321x481 or 481x321 (2:1), and 10,103 PASCAL VOC images with a longest side of
  500, the other 55 % 375, 15 % 333, 30 % spread (uniform 150-500), 75 % landscape."""
  rng = np.random.default_rng(seed)
  bsds = [(321, 481) if rng.random() < 2 / 3 else (481, 321) for _ in range(9_600)]
  count = 10_103
  other = np.where(
    rng.random(count) < 0.55,
    375,
    np.where(rng.random(count) < 0.15 / 0.45, 333, rng.integers(150, 501, count)),
  )
  landscape = rng.random(count) < 0.75
  return bsds + [(int(o), 500) if w else (500, int(o)) for o, w in zip(other, landscape)]


def read_sizes(path):
  """[(H, W)] of a file of `H,W` lines (blank lines and # comments skipped)."""
  sizes = []
  with open(path, encoding="utf-8") as f:
    for number, line in enumerate(f, 1):
      line = line.split("#")[0].strip()
      if not line:
        continue
      try:
        height, width = (int(v) for v in line.replace("x", ",").split(","))
      except ValueError:
        raise SystemExit(f"error: {path}:{number}: expected 'H,W', got {line!r}") from None
      if min(height, width) < 1:
        raise SystemExit(f"error: {path}:{number}: size {height},{width} is not positive")
      sizes.append((height, width))
  if not sizes:
    raise SystemExit(f"error: {path}: no sizes")
  return sizes


class SizeSource:
  """A training source that only knows its images' sizes (what the pipeline's planning reads)."""

  def __init__(self, sizes):
    self.sizes = sizes

  def __len__(self):
    return len(self.sizes)

  def __getitem__(self, index):
    raise RuntimeError("bench.shapes plans steps only; no image is loaded")

  def image_size(self, index):
    return self.sizes[index]


def iterator(sizes, batch_size, multiple, label_key="mask", max_rescale=0.0):
  return pipeline.train_iterator(
    SizeSource(sizes),
    label_key=label_key,
    mode="native",
    batch_size=batch_size,
    num_devices=1,
    process_index=0,
    process_count=1,
    min_size=MIN_SIZE,
    native_multiple=multiple,
    native_max_rescale=max_rescale,
    plan_sizes=True,
  )


def epoch_row(sizes, batch_size, multiple, max_rescale=0.0):
  """(distinct shapes, largest relative change of a side, share of images resized) of
  epoch 0, against each image's exact native size."""
  it = iterator(sizes, batch_size, multiple, max_rescale=max_rescale)
  steps = it.planned_steps(0, it.steps_per_epoch)
  largest, resized, images = 0.0, 0, 0
  for step in steps:
    for index, size in step:
      exact = np.asarray(transforms.native_size(sizes[index], MIN_SIZE), float)
      change = np.abs(np.asarray(size) - exact) / exact
      largest, resized, images = (
        max(largest, change.max()),
        resized + bool(change.any()),
        images + 1,
      )
  return len(it.epoch_shapes(0)), largest, resized / images


def joint_counts(saliency, edges, multiple, max_rescale=0.0, calls=JOINT_CALLS):
  """(edge shapes, saliency shapes) of a joint epoch of `calls` calls at batch 1."""
  it = pipeline.JointIterator(
    iterator(saliency, 1, multiple, max_rescale=max_rescale),
    iterator(edges, 1, multiple, label_key="edge", max_rescale=max_rescale),
  )
  shapes = it.step_shapes(0, calls)
  return len(shapes["edge"]), len(shapes["saliency"])


def fewest_possible(sizes, multiple, max_rescale):
  """The fewest sizes (multiples of `multiple`) that fit every image of `sizes` as
  data.native_max_rescale fits them: the set-cover optimum by scipy's MILP (HiGHS), or
  None without scipy."""
  try:
    from scipy import optimize  # pylint: disable=import-outside-toplevel
  except ImportError:
    return None
  own = [transforms.native_size(s, MIN_SIZE) for s in sizes]
  _, candidates, fits = train_sizes.candidate_fits(own, multiple, max_rescale, MIN_SIZE)
  distinct = fits[:, 1].max() + 1
  covers = np.zeros((distinct, len(candidates)))
  covers[fits[:, 1], fits[:, 0]] = 1
  result = optimize.milp(
    np.ones(len(candidates)),
    constraints=optimize.LinearConstraint(covers, lb=1),
    integrality=np.ones(len(candidates)),
    bounds=optimize.Bounds(0, 1),
  )
  return round(result.fun) if result.success else None


def _trainer(tiny, parallel="pmap"):
  from poolnet_jax.train import step as step_lib  # pylint: disable=import-outside-toplevel
  from poolnet_jax.train import parallel as parallel_lib  # pylint: disable=import-outside-toplevel

  model = create_model("resnet50", **(common.TINY if tiny else {}))
  variables = jax.jit(model.init)(jax.random.PRNGKey(0), jnp.zeros((1, 128, 128, 3)))
  tx = step_lib.create_optimizer(
    variables["params"], lambda _: common.LEARNING_RATE, common.WEIGHT_DECAY
  )
  trainer = parallel_lib.make_trainer(model, 1, parallel)
  state = trainer.replicate(step_lib.TrainState.create(variables, tx))
  return trainer, state, trainer.init_sums(state)


def first_shapes(sizes, count):
  """The first `count` distinct step shapes of the exact epoch at batch 1, in step order."""
  it = iterator(sizes, 1, 0)
  seen = []
  for step in it.planned_steps(0, it.steps_per_epoch):
    shape = (1,) + tuple(step[0][1])
    if shape not in seen:
      seen.append(shape)
    if len(seen) == count:
      break
  return seen


def compile_seconds(shapes, tiny=False):
  """[(shape, compile seconds of its programs, wall seconds)], one trainer.compile each."""
  from poolnet_jax.train import warmup  # pylint: disable=import-outside-toplevel

  trainer, state, sums = _trainer(tiny)
  rows = []
  for shape in shapes:
    before, start = compilation.snapshot(), time.time()
    trainer.compile(state, sums, trainer.put(warmup.zeros_batch(shape)))
    rows.append((shape, compilation.snapshot().minus(before).compile_seconds, time.time() - start))
  return rows


def ahead_run(shapes, workers, tiny):
  """(s to the first update, s to the end, compile s) of one update per shape; workers 0:
  compiled on demand by the calls, else compiled ahead (AheadCompiler) first."""
  from poolnet_jax.train import warmup  # pylint: disable=import-outside-toplevel

  trainer, state, sums = _trainer(tiny)  # new functions: nothing of an earlier run reused
  before, start = compilation.snapshot(), time.time()
  if workers:
    warmup.AheadCompiler(trainer, workers).compile(state, sums, {"saliency": shapes})
  first = None
  for shape in shapes:
    sums = trainer.call(state, sums, trainer.put(warmup.zeros_batch(shape)))
    state, sums = trainer.update(state, sums)
    jax.block_until_ready(state.params)
    first = first or time.time() - start
  return first, time.time() - start, compilation.snapshot().minus(before).compile_seconds


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--sizes", help="file of H,W lines (default: a DUTS-TR-like list)")
  parser.add_argument("--edge_sizes", help="file of H,W lines (default: BSDS + PASCAL-like)")
  parser.add_argument("--seed", type=int, default=0, help="of the made-up size lists")
  parser.add_argument(
    "--max_rescale",
    type=float,
    default=MAX_RESCALE,
    help="data.native_max_rescale of the rows of sizes chosen for the dataset",
  )
  parser.add_argument(
    "--compile",
    type=int,
    default=0,
    metavar="N",
    help="compile seconds of the full ResNet-50 train step, N shapes",
  )
  parser.add_argument(
    "--ahead",
    type=int,
    default=0,
    metavar="K",
    help="on-demand vs ahead-of-time compilation of K shapes",
  )
  parser.add_argument("--tiny", action="store_true", help="--compile/--ahead: the demo model")
  parser.add_argument(
    "--workers",
    default="0,1,2",
    help="--ahead: the runs, in this order (0: on demand, n: n workers)",
  )
  args = parser.parse_args(argv)
  runtime.apply_xla_defaults()
  compilation.watch()
  saliency = read_sizes(args.sizes) if args.sizes else duts_like_sizes(seed=args.seed)
  edges = read_sizes(args.edge_sizes) if args.edge_sizes else edge_like_sizes(args.seed + 1)
  print(f"{len(saliency)} images, {len(set(saliency))} distinct sizes; min_size {MIN_SIZE}")
  print("| M | batch | shapes per epoch | largest rescale | images resized |")
  print("| --- | --- | --- | --- | --- |")
  r = args.max_rescale
  # (M, rescale limit) of each row: nearest rounding (limit 0), then sizes chosen at r
  settings = [(m, 0.0) for m in MULTIPLES] + [(m, r) for m in MULTIPLES[1:]]
  label = lambda m, limit: f"{m}, r = {100 * limit:g} %" if limit else f"{m or 'exact'}"
  counts = {}
  for multiple, limit in settings:
    for batch in BATCHES:
      shapes, largest, resized = epoch_row(saliency, batch, multiple, limit)
      counts[multiple, batch, limit] = shapes
      print(
        f"| {label(multiple, limit)} | {batch} | {shapes} | {100 * largest:.1f} % | "
        f"{100 * resized:.1f} % |"
      )
  fewest = fewest_possible(saliency, 16, r)
  print(f"fewest possible at M=16, r = {100 * r:g} % (scipy MILP): {fewest}")
  print(
    f"joint epoch ({JOINT_CALLS:,} calls, batch 1; {len(edges)} edge images, "
    f"{len(set(edges))} distinct sizes): programs = edge + saliency shapes"
  )
  joint = {}
  for multiple, limit in settings:
    edge, sal = joint_counts(saliency, edges, multiple, limit)
    joint[multiple, limit] = edge + sal
    print(f"  M={label(multiple, limit)}: {edge} + {sal} = {edge + sal}")
  if args.compile:
    what = "tiny" if args.tiny else "full"
    print(f"compile seconds, {what} ResNet-50 train step, cold (first: gradient + update):")
    for shape, seconds, wall in compile_seconds(first_shapes(saliency, args.compile), args.tiny):
      print(f"  {shape}: {seconds:.1f} s compiling, {wall:.1f} s wall")
  if args.ahead:
    shapes = first_shapes(saliency, args.ahead)
    print(
      f"{args.ahead} shapes, one update each ({'tiny' if args.tiny else 'full'} model): "
      f"s to first update / to the end / compiling"
    )
    for workers in (int(w) for w in args.workers.split(",")):
      first, total, seconds = ahead_run(shapes, workers, args.tiny)
      how = f"ahead, {workers} worker{'s' if workers > 1 else ''}" if workers else "on demand"
      print(f"  {how}: {first:.1f} / {total:.1f} / {seconds:.1f}")
  print(
    f"shapes per epoch: exact={counts[0, 1, 0.0]} m16={counts[16, 1, 0.0]} "
    f"joint_exact={joint[0, 0.0]} "
    f"m16_r{100 * r:g}={counts[16, 1, r]} m16_r{100 * r:g}_fewest={fewest}"
  )


if __name__ == "__main__":
  main()
