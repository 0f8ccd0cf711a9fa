"""data/train_sizes.py: few training sizes chosen for a whole dataset, each image within
the rescale limit of its own size; the pipeline trains every image at its chosen size."""

import itertools

import numpy as np
import pytest

from poolnet_jax.data import pipeline, train_sizes

from coded_examples import sized_source, take
from test_pipeline_shapes import shapes_of


def test_a_hand_worked_list():
  # M = 16, 6 %: side 290 may go to 288 or 304, 300 to 288 or 304, 310 to 304 or 320, 400
  # to 384, 400 or 416. Nearest rounding gives two sizes, (288, 400) and (304, 400); one
  # size fits all three: (304, 400) (as do (304, 384) and (304, 416); 400 is the least
  # rescaled), where (288, 400) fits only two.
  chosen = train_sizes.fewest_sizes([(300, 400), (310, 400), (290, 400)], 16, 0.06)
  assert chosen == {(300, 400): (304, 400), (310, 400): (304, 400), (290, 400): (304, 400)}
  # A side with no multiple within the limit keeps its nearest one: 120 at M = 32, 2 %.
  assert train_sizes.fewest_sizes([(120, 256)], 32, 0.02) == {(120, 256): (128, 256)}
  # Never below the smallest multiple >= min_size: 100 -> 112 at min_size 111.
  assert train_sizes.fewest_sizes([(100, 160)], 16, 0.06, min_size=111) == {(100, 160): (112, 160)}


def _nearest(size, multiple):
  return tuple(max(multiple, (2 * n + multiple) // (2 * multiple) * multiple) for n in size)


@pytest.mark.parametrize("multiple,limit", [(8, 0.03), (16, 0.06), (32, 0.06)])
def test_every_image_within_its_limit_and_fewer_sizes_than_rounding(multiple, limit):
  rng = np.random.default_rng(multiple)
  sizes = [tuple(int(n) for n in rng.integers(120, 420, 2)) for _ in range(400)]
  sizes += sizes[:100]  # repeats
  chosen = train_sizes.fewest_sizes(sizes, multiple, limit)
  assert set(chosen) == set(sizes)
  for own, size in chosen.items():
    nearest = _nearest(own, multiple)
    for side, n, m in zip(size, own, nearest):
      assert side % multiple == 0 and side >= multiple
      assert abs(side / n - 1) <= max(limit, abs(m / n - 1)) + 1e-12, (own, size)
    # the nearest of the chosen sizes that fit: no chosen size fits this image better
    fitting = [
      c
      for c in set(chosen.values())
      if all(abs(a / n - 1) <= max(limit, abs(m / n - 1)) for a, n, m in zip(c, own, nearest))
    ]
    assert min(train_sizes.largest_change(c, own) for c in fitting) == pytest.approx(
      train_sizes.largest_change(size, own)
    )
  assert len(set(chosen.values())) < len({_nearest(s, multiple) for s in sizes})


def test_no_smaller_set_of_sizes_fits_a_small_list():
  """Against brute force: on a small list greedy finds the fewest sizes. By hand: 280 and
  318 share no multiple of 16 within 6 % (272-288 against 304-320), nor 210 and 190;
  400 x 300 fits none of the others: 5."""
  sizes = [(300, 400), (280, 395), (318, 410), (200, 300), (210, 290), (190, 310), (400, 300)]
  chosen = train_sizes.fewest_sizes(sizes, 16, 0.06)
  within = lambda c, s: all(abs(a / n - 1) <= 0.06 for a, n in zip(c, s))
  candidates = [(h, w) for h in range(176, 432, 16) for w in range(176, 432, 16)]
  fewest = next(
    k
    for k in range(1, len(sizes) + 1)
    for pick in itertools.combinations(
      [c for c in candidates if any(within(c, s) for s in sizes)], k
    )
    if all(any(within(c, s) for c in pick) for s in sizes)
  )
  assert len(set(chosen.values())) == fewest == 5


def test_the_pipeline_trains_each_image_at_its_chosen_size():
  # M = 8, 6 %: 150, 155 and 145 all fit 152 (nearest rounding: 152, 152, 144), 200 stays;
  # 130 x 131 and 129 x 140 (min_size 111) both fit (128, 136), the least rescaled of the
  # sizes that fit both ((128, 136), (136, 136)).
  sizes = [(150, 200), (155, 200), (145, 200), (130, 131), (129, 140)]
  want = {(150, 200): (152, 200), (155, 200): (152, 200), (145, 200): (152, 200)}
  want.update({(130, 131): (128, 136), (129, 140): (128, 136)})
  assert train_sizes.fewest_sizes(sizes, 8, 0.06, min_size=111) == want
  for batch_size in (1, 2):
    it = pipeline.train_iterator(
      sized_source(sizes),
      batch_size=batch_size,
      num_devices=batch_size,
      flip=False,
      min_size=111,
      native_multiple=8,
      native_max_rescale=0.06,
    )
    batches = take(it, it.steps_per_epoch)
    planned = it.planned_steps(0, it.steps_per_epoch)
    for step, batch in zip(planned, batches):
      assert batch["image"].shape[2:4] == batch["label"].shape[2:4] == step[0][1]
      if batch_size == 1:
        assert step[0][1] == want[sizes[step[0][0]]]
    assert it.epoch_shapes(0) == sorted(set(shapes_of(batches)))
    assert {s[1:] for s in it.epoch_shapes(0)} <= {(152, 200), (128, 136)}
  with pytest.raises(ValueError, match="needs native_multiple > 0"):
    pipeline.train_iterator(sized_source(sizes), num_devices=1, native_max_rescale=0.06)
