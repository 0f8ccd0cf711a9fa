"""Bilinear resizing, each rule written once, and the size a network runs an image at.

Two sampling rules, both separable (one 1-D interpolation per spatial axis):
- `align_corners=True`, PyTorch's `F.interpolate(..., align_corners=True)`:
  output i samples input coordinate i * (in - 1) / (out - 1) (0 if out == 1).
  The network's own resizes (`ops.resize_bilinear`, jnp), the training data
  (`data.transforms`) and inference's resizes to and from the run size.
- `align_corners=False`, OpenCV's `INTER_LINEAR`: half-pixel centres,
  (i + 0.5) * step - 0.5 clamped at 0, step = in / out or, given cv2's fx = fy
  `scale`, 1 / scale. The original's edge test and the SOD toolkits' map resizing.

`interpolation_taps` gives each output's two neighbours and weight (numpy,
cached, read-only), `interpolation_matrix` the same as an (out, in) matrix,
`resize` applies them to numpy arrays (no antialiasing). `native_size` is the
one rule for the size an image runs at (minimum, maximum, rounding).
"""

import functools

import numpy as np


@functools.lru_cache(maxsize=None)
def interpolation_taps(in_size: int, out_size: int, align_corners: bool = True, scale=None):
  """(lo, hi, frac) along one axis: output i = (1 - frac[i]) * x[lo[i]] + frac[i] * x[hi[i]].

  lo, hi int32 and frac float64 numpy arrays (read-only, shared by all callers);
  frac is 0 where lo == hi (the clamped borders).
  """
  out = np.arange(out_size, dtype=np.float64)
  if align_corners:
    src = out * ((in_size - 1) / (out_size - 1) if out_size > 1 else 0.0)
  else:
    step = 1.0 / scale if scale else in_size / out_size
    src = np.maximum((out + 0.5) * step - 0.5, 0.0)
  lo = np.minimum(np.floor(src).astype(np.int32), in_size - 1)
  hi = np.minimum(lo + 1, in_size - 1)
  frac = np.where(hi > lo, src - lo, 0.0)
  for array in (lo, hi, frac):
    array.flags.writeable = False
  return lo, hi, frac


@functools.lru_cache(maxsize=None)
def interpolation_matrix(
  in_size: int, out_size: int, align_corners: bool = True, scale=None
) -> np.ndarray:
  """(out_size, in_size) float64 matrix of `interpolation_taps` (read-only)."""
  lo, hi, frac = interpolation_taps(in_size, out_size, align_corners, scale)
  matrix = np.zeros((out_size, in_size), np.float64)
  rows = np.arange(out_size)
  np.add.at(matrix, (rows, lo), 1.0 - frac)
  np.add.at(matrix, (rows, hi), frac)
  matrix.flags.writeable = False
  return matrix


def resize(array, size, align_corners=True, scale=None):
  """Bilinear resize of (H, W), (H, W, C) or (N, H, W, C) to `size` = (H', W'), float32.

  Along H then W, in float32: x[lo] * (1 - frac) + x[hi] * frac. `scale` (the
  OpenCV rule only) is cv2's fx = fy, which sets the sampling step. An axis
  already of its size (and no `scale`) is left as it is.
  """
  array = np.asarray(array, np.float32)
  axis = 1 if array.ndim == 4 else 0
  for offset, out_size in enumerate(size):
    along = axis + offset
    in_size = array.shape[along]
    if in_size == out_size and scale is None:
      continue
    lo, hi, frac = interpolation_taps(in_size, int(out_size), align_corners, scale)
    shape = [1] * array.ndim
    shape[along] = -1
    weight = frac.astype(np.float32).reshape(shape)
    array = np.take(array, lo, axis=along) * (1 - weight) + np.take(array, hi, axis=along) * weight
  return array


def native_size(shape, min_size=0, max_size=0, multiple=0):
  """(H, W) a network runs an image of `shape` = (H, W, ...) at.

  Its own size; scaled down (aspect kept) if its longest side exceeds
  `max_size` > 0; scaled up (aspect kept) if its shortest side is below
  `min_size` (the minimum wins over the maximum). With `multiple` > 0 the
  minimum is first raised to a multiple of it, then each side is rounded to
  the nearest multiple (down if that would pass a `max_size` the side was
  within): never below `min_size`. multiple=0: exact sizes.
  """
  height, width = int(shape[0]), int(shape[1])
  if multiple:  # scaled up to a multiple, not rounded up one side alone: the aspect holds
    min_size = smallest_multiple(min_size, multiple)
  scale = 1.0
  if max_size and max(height, width) > max_size:
    scale = max_size / max(height, width)
  if min_size and min(height, width) * scale < min_size:
    scale = min_size / min(height, width)
  size = (height, width)
  if scale != 1.0:
    size = tuple(max(min_size, round(n * scale)) for n in size)
  return round_to_multiple(size, multiple, min_size, max_size) if multiple else size


def round_to_multiple(size, multiple, min_size=0, max_size=0):
  """Each side of `size` to its nearest multiple of `multiple` (halves up), at least the
  smallest multiple >= max(min_size, 1); a side within `max_size` stays within it."""
  lowest = smallest_multiple(min_size, multiple)
  rounded = []
  for n in size:
    m = (2 * n + multiple) // (2 * multiple) * multiple
    if max_size and n <= max_size < m:
      m -= multiple
    rounded.append(max(m, lowest))
  return tuple(rounded)


def smallest_multiple(min_size, multiple):
  """The smallest multiple of `multiple` >= max(min_size, 1)."""
  if multiple < 1:
    raise ValueError(f"multiple must be >= 1, got {multiple}")
  return -(-max(min_size, 1) // multiple) * multiple
