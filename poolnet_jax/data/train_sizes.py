"""The size each training image is trained at: one rule per data mode, and few sizes
for a whole dataset within a rescale limit.

    target = TrainSize("native", (320, 320), (), min_size=111, multiple=16)
    target((298, 401, 3))  # (304, 400): each side to its nearest multiple of 16
    chosen = fewest_sizes([(300, 400), (298, 401), ...], multiple=16, max_rescale=0.06)

Rounding each side to its nearest multiple of M (`native_multiple`) gives one
program per distinct rounded size, and a long tail of rare sizes keeps nearly
one each. `fewest_sizes` chooses the sizes for the dataset at once: among the
sizes whose sides are multiples of M, each within `max_rescale` (relative) of
the image's side, or the side's nearest multiple where none is, a greedy set
cover picks the size that fits the most distinct image sizes not yet fitted
(ties: the most images, then the least rescaling of them) until every image has
one, drops any chosen size the others make redundant, and trains each image at
the chosen size nearest its own. Greedy set cover is within a factor ln(n) of
the fewest possible; on the DUTS-TR-like list of bench/shapes.py it picks 60
sizes where 57 is the optimum (scipy's MILP) and nearest rounding gives 111.
"""

import collections

from absl import logging
import numpy as np

from poolnet_jax.data import transforms
from poolnet_jax.imaging import resize

MODES = ("native", "fixed", "buckets")


class TrainSize:
  """The size an image of shape (H, W, ...) is trained at, for one mode."""

  def __init__(self, mode, size, buckets, min_size, multiple=0, max_rescale=0.0):
    if mode not in MODES:
      raise ValueError(f"data mode must be one of {MODES}, got {mode!r}")
    if not isinstance(multiple, int) or isinstance(multiple, bool) or multiple < 0:
      raise ValueError(
        f"native_multiple must be an integer >= 0 (0: exact sizes), got {multiple!r}"
      )
    if not 0 <= max_rescale < 1 or (max_rescale and not multiple):
      raise ValueError(
        f"native_max_rescale must be in [0, 1) and needs native_multiple > 0, got "
        f"{max_rescale!r} with native_multiple {multiple!r}"
      )
    self.mode, self.size, self.buckets, self.min_size = mode, tuple(size), buckets, min_size
    self.multiple, self.max_rescale = multiple, max_rescale
    self.covers = bool(max_rescale) and mode == "native"  # sizes chosen for the whole dataset
    if mode == "fixed" and (len(self.size) != 2 or min(self.size) < 1):
      raise ValueError(f"fixed mode needs size=(H, W), got {size!r}")
    if mode == "buckets" and (not buckets or any(len(b) != 2 or min(b) < 1 for b in buckets)):
      raise ValueError(f"buckets mode needs buckets=((H, W), ...), got {buckets!r}")

  def __call__(self, shape):
    if self.mode == "fixed":
      return self.size
    if self.mode == "buckets":
      return transforms.nearest_bucket(shape, self.buckets)
    if not self.multiple:
      return transforms.native_size(shape, self.min_size)
    return transforms.native_size(shape, self._smallest, multiple=self.multiple)

  @property
  def _smallest(self):
    """The first multiple >= min_size: images are scaled up to it, aspect kept (not one
    side rounded up alone)."""
    return resize.smallest_multiple(self.min_size, self.multiple)

  def plan(self, shapes):
    """The target of each of `shapes`, chosen together when `covers`."""
    if not self.covers:
      return [self(s) for s in shapes]
    own = [transforms.native_size(s, self._smallest) for s in shapes]
    chosen = fewest_sizes(own, self.multiple, self.max_rescale, self._smallest)
    logging.info(
      "native sizes: %d distinct image sizes train at %d sizes (multiples of %d, each side "
      "within %.1f %% of its own or at its nearest multiple)",
      len(chosen),
      len(set(chosen.values())),
      self.multiple,
      100 * self.max_rescale,
    )
    return [chosen[s] for s in own]


def fewest_sizes(sizes, multiple, max_rescale, min_size=0):
  """{(H, W): (H', W')} for every distinct size in `sizes` (a list with repeats: the
  repeats break ties): H', W' multiples of `multiple`, at least the smallest multiple
  >= `min_size`, each within `max_rescale` of H, W (or the side's nearest multiple)."""
  if not isinstance(multiple, int) or multiple < 1:
    raise ValueError(f"fewest_sizes needs a multiple >= 1, got {multiple!r}")
  if not 0 <= max_rescale < 1:
    raise ValueError(f"max_rescale must be in [0, 1), got {max_rescale!r}")
  images = collections.Counter(tuple(int(n) for n in s) for s in sizes)
  distinct, candidates, fits = candidate_fits(images, multiple, max_rescale, min_size)
  weight = np.asarray([images[s] for s in distinct], np.int64)[fits[:, 1]]
  change = weight * [largest_change(candidates[c], distinct[i]) for c, i in fits]
  unfitted = np.ones(len(distinct), bool)
  chosen = []
  while unfitted.any():
    open_ = unfitted[fits[:, 1]]
    per = lambda values: np.bincount(fits[open_, 0], values, minlength=len(candidates))
    covers, covered_images, rescaled = per(None), per(weight[open_]), per(change[open_])
    best = max(
      range(len(candidates)),
      key=lambda c: (covers[c], covered_images[c], -rescaled[c], _neg(candidates[c])),
    )
    chosen.append(best)
    unfitted[fits[fits[:, 0] == best, 1]] = False
  chosen_index = _without_redundant(chosen, fits, len(distinct))
  result = {}
  for c, i in fits:
    if c in chosen_index:
      size, own = candidates[c], distinct[i]
      if own not in result or _change(size, own) < _change(result[own], own):
        result[own] = size
  return result


def candidate_fits(sizes, multiple, max_rescale, min_size=0):
  """(distinct sizes sorted, candidate sizes, [candidate index, size index] pairs: which
  candidate fits which size), the set-cover problem `fewest_sizes` solves."""
  distinct = sorted({tuple(int(n) for n in s) for s in sizes})
  lowest = resize.smallest_multiple(min_size, multiple)
  sides = {n: _sides(n, multiple, max_rescale, lowest) for s in distinct for n in s}
  candidates, fits = {}, []
  for i, (h, w) in enumerate(distinct):
    for size in ((a, b) for a in sides[h] for b in sides[w]):
      fits.append((candidates.setdefault(size, len(candidates)), i))
  return distinct, sorted(candidates, key=candidates.get), np.asarray(fits, np.int64)


def _without_redundant(chosen, fits, count):
  """`chosen` less each size (the latest picked first) whose images all fit others left."""
  fitted_by = np.zeros(count, np.int64)
  for c in chosen:
    fitted_by[fits[fits[:, 0] == c, 1]] += 1
  kept = set(chosen)
  for c in reversed(chosen):
    own = fits[fits[:, 0] == c, 1]
    if (fitted_by[own] > 1).all():
      kept.discard(c)
      fitted_by[own] -= 1
  return kept


def largest_change(size, own):
  """The largest relative change of a side from `own` to `size`."""
  return max(abs(a / b - 1) for a, b in zip(size, own))


def _sides(n, multiple, max_rescale, lowest):
  """The multiples (>= lowest) within max_rescale of side n, and n's nearest one."""
  nearest = resize.round_to_multiple((n,), multiple, lowest)[0]
  first = max(lowest, -(-int(np.floor(n * (1 - max_rescale))) // multiple) * multiple)
  within = [m for m in range(first, int(n * (1 + max_rescale)) + 1, multiple)]
  within = [m for m in within if abs(m / n - 1) <= max_rescale]
  return sorted(set(within) | {nearest})


def _change(size, own):
  return (largest_change(size, own), size)


def _neg(size):
  return tuple(-n for n in size)
