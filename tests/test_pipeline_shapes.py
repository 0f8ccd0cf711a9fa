"""Step shapes: native sizes rounded to a multiple (never below the network's minimum), the
shapes a plan announces equal to the batches' shapes, per task for joint models."""

import numpy as np
import pytest

from poolnet_jax.data import pipeline

from coded_examples import ids, sized_source, take


def shapes_of(batches):
  """(B, H, W) of each batch as `take` returns them ([B, 1, H, W, C])."""
  return [(b["image"].shape[0],) + b["image"].shape[2:4] for b in batches]


def test_native_multiple_rounds_each_side_never_below_the_minimum():
  sizes = [(100, 150), (37, 61), (9, 30), (21, 40)]
  # By hand: an image whose short side is below the first multiple >= min_size is scaled up
  # to it (aspect kept, as today's scaling to min_size), then each side goes to its nearest
  # multiple (halves up). (9, 30) at min_size 20, multiple 16: (32, round(30 * 32 / 9) = 107)
  # -> (32, 112). multiple 0: today's sizes.
  cases = {
    (0, 16): [(100, 150), (37, 61), (16, 53), (21, 40)],
    (8, 16): [(104, 152), (40, 64), (16, 56), (24, 40)],
    (16, 20): [(96, 144), (32, 64), (32, 112), (32, 64)],
    (32, 16): [(96, 160), (32, 64), (32, 96), (32, 64)],
  }
  for (multiple, min_size), want in cases.items():
    for k, size in enumerate(sizes):
      it = pipeline.train_iterator(
        sized_source([size]),
        batch_size=1,
        num_devices=1,
        min_size=min_size,
        native_multiple=multiple,
      )
      batch = take(it, 1)[0]
      assert batch["image"].shape[2:4] == batch["label"].shape[2:4] == want[k], (multiple, size)
      if multiple:
        assert all(n % multiple == 0 and n >= min_size for n in want[k])
  with pytest.raises(ValueError, match="native_multiple must be an integer >= 0"):
    pipeline.train_iterator(sized_source(sizes), num_devices=1, native_multiple=-8)


def test_native_multiple_at_batch_2_groups_by_the_rounded_size():
  sizes = [(100, 150), (101, 149), (98, 152), (60, 80), (61, 79), (59, 81)]
  # multiple 8: (104, 152) x 2 and (64, 80) x 2 make full steps; (96, 152) and (56, 80)
  # are left over, sorted by aspect (81 / 59 < 152 / 98), and take their middle's (96, 152).
  it = pipeline.train_iterator(
    sized_source(sizes), batch_size=2, num_devices=2, flip=False, native_multiple=8
  )
  assert it.epoch_shapes(0) == [(2, 64, 80), (2, 96, 152), (2, 104, 152)]
  assert sorted(shapes_of(take(it, 3))) == it.epoch_shapes(0)


def test_step_shapes_are_the_shapes_the_batches_have():
  sizes = [(16, 24)] * 3 + [(24, 16)] * 2 + [(20, 20), (18, 26), (13, 30)]
  for kwargs in (
    dict(batch_size=1, num_devices=1, plan_sizes=True, min_size=15),
    dict(batch_size=2, num_devices=2),
    dict(batch_size=2, num_devices=1, process_count=2, process_index=1),
  ):
    it = pipeline.train_iterator(sized_source(sizes), flip=False, seed=3, **kwargs)
    per_epoch = it.steps_per_epoch
    planned = it.planned_steps(0, 2 * per_epoch)  # two epochs: two permutations
    batches = take(it, 2 * per_epoch)
    local = kwargs["batch_size"] // kwargs.get("process_count", 1)
    assert shapes_of(batches) == [(local,) + step[0][1] for step in planned]
    if local == kwargs["batch_size"]:  # one process: its batch holds the planned examples
      assert [ids(b) for b in batches] == [[i for i, _ in step] for step in planned]
    for epoch in (0, 1):
      assert it.epoch_shapes(epoch) == sorted(
        set(shapes_of(batches[epoch * per_epoch : (epoch + 1) * per_epoch]))
      )
    assert it.step_shapes(0, 2 * per_epoch) == sorted(set(shapes_of(batches)))
  assert (1, 15, 35) in pipeline.train_iterator(  # 13x30 scaled up to min_size 15
    sized_source(sizes), batch_size=1, num_devices=1, plan_sizes=True, min_size=15
  ).epoch_shapes(0)


def test_reading_sizes_at_batch_1_keeps_the_order():
  sizes = [(16, 24), (24, 16), (20, 20), (18, 26)] * 2
  make = lambda plan: pipeline.train_iterator(
    sized_source(sizes), batch_size=1, num_devices=1, seed=5, plan_sizes=plan
  )
  want, got = take(make(False), 16), take(make(True), 16)
  for w, g in zip(want, got):
    np.testing.assert_array_equal(w["image"], g["image"])
  with pytest.raises(ValueError, match="plan_sizes=True"):
    make(False).epoch_shapes(0)
  fixed = pipeline.train_iterator(
    sized_source(sizes), mode="fixed", size=(8, 12), batch_size=2, num_devices=1
  )
  assert fixed.epoch_shapes(3) == [(2, 8, 12)]  # no sizes needed


def test_joint_step_shapes_per_task():
  saliency = sized_source([(16, 24), (24, 16), (20, 20)])
  edges = sized_source([(30, 20), (20, 30)])
  make = lambda: pipeline.joint_iterator(
    saliency, edges, batch_size=1, num_devices=1, plan_sizes=True
  )
  it = make()
  steps = take(it, 7)  # past both streams' epoch ends (3 and 2 steps)
  shapes = make().step_shapes(0, 7)
  assert shapes == {
    task: sorted(set(shapes_of([s[task] for s in steps]))) for task in ("edge", "saliency")
  }
  assert shapes == {
    "edge": [(1, 20, 30), (1, 30, 20)],
    "saliency": [(1, 16, 24), (1, 20, 20), (1, 24, 16)],
  }
  assert make().epoch_shapes(0) == shapes
