"""poolnet_jax.imaging.resize: both bilinear rules against PyTorch and OpenCV; the run-size rule."""

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from poolnet_jax.data import transforms
from poolnet_jax.imaging import ops
from poolnet_jax.imaging import resize as resize_lib


def _torch(x, size):
  """F.interpolate(align_corners=True) of an (H, W, C) array."""
  t = torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))[None]
  out = F.interpolate(t, size=size, mode="bilinear", align_corners=True)
  return out[0].numpy().transpose(1, 2, 0)


def test_align_corners_follows_pytorch_and_the_networks_own_resize():
  x = np.random.default_rng(0).uniform(0, 255, (13, 17, 3)).astype(np.float32)
  for size in [(13, 17), (7, 9), (26, 40), (1, 5), (5, 1), (20, 11), (80, 29)]:
    found = resize_lib.resize(x, size)
    np.testing.assert_allclose(found, _torch(x, size), atol=5e-4)  # on 0..255
    np.testing.assert_allclose(found, np.asarray(ops.resize_bilinear(x[None], size))[0], atol=5e-4)
    batched = resize_lib.resize(np.stack([x, x[::-1]]), size)  # (N, H, W, C): each image alone
    np.testing.assert_array_equal(batched[0], found)
    np.testing.assert_array_equal(batched[1], resize_lib.resize(x[::-1], size))
  single = resize_lib.resize(x[..., 0], (7, 9))  # (H, W)
  assert single.shape == (7, 9)
  np.testing.assert_array_equal(single, resize_lib.resize(x[..., :1], (7, 9))[..., 0])


def test_half_pixel_rule_follows_opencv():
  x = np.random.default_rng(1).uniform(0, 255, (37, 53, 3)).astype(np.float32)
  for size in [(20, 31), (80, 111), (37, 90), (1, 1)]:
    expected = cv2.resize(x, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)
    found = resize_lib.resize(x, size, align_corners=False)
    np.testing.assert_allclose(found, expected, atol=1e-3)
  for scale in (0.5, 1.5, 2.0):  # cv2's fx = fy sets the sampling step
    expected = cv2.resize(x, None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR)
    found = resize_lib.resize(x, expected.shape[:2], align_corners=False, scale=scale)
    np.testing.assert_allclose(found, expected, atol=1e-3)


def test_taps_and_matrices_are_one_interpolation():
  x = np.random.default_rng(2).normal(size=(11, 4)).astype(np.float64)
  for align_corners in (True, False):
    for out in (1, 5, 11, 23):
      matrix = resize_lib.interpolation_matrix(11, out, align_corners)
      np.testing.assert_allclose(matrix.sum(axis=1), 1.0, rtol=1e-12)
      lo, hi, frac = resize_lib.interpolation_taps(11, out, align_corners)
      np.testing.assert_allclose(
        matrix @ x, x[lo] * (1 - frac[:, None]) + x[hi] * frac[:, None], rtol=1e-12
      )
  # Hand-computed: 3 -> 5 with aligned corners samples 0, 0.5, 1, 1.5, 2.
  lo, hi, frac = resize_lib.interpolation_taps(3, 5)
  assert lo.tolist() == [0, 0, 1, 1, 2] and hi.tolist() == [1, 1, 2, 2, 2]
  assert frac.tolist() == [0.0, 0.5, 0.0, 0.5, 0.0]
  with pytest.raises(ValueError):  # shared by every caller: nobody may change them
    frac[0] = 1.0


def test_native_size_minimum_maximum_and_exact_by_default():
  assert resize_lib.native_size((121, 133), 111) == (121, 133)
  assert resize_lib.native_size((40, 44), 111) == (111, 122)  # 44 * 111 / 40 = 122.1
  assert resize_lib.native_size((4000, 6000), 111, 1024) == (683, 1024)
  assert resize_lib.native_size((100, 20000), 111, 1024) == (111, 22200)  # the minimum wins
  assert resize_lib.native_size((7, 9, 3)) == (7, 9)
  assert transforms.native_size is resize_lib.native_size  # training's sizes: the same rule


def test_size_multiple_rounds_to_nearest_never_below_the_minimum():
  assert resize_lib.native_size((300, 401), 111, multiple=16) == (304, 400)
  # Scaled up to 112 (the first multiple of 16 >= 111, aspect kept): 112x123, then 112x128.
  assert resize_lib.native_size((40, 44), 111, multiple=16) == (112, 128)
  assert resize_lib.native_size((47, 71), 111, multiple=32) == (128, 192)  # 128x193
  assert resize_lib.native_size((4000, 6000), 111, 1000, 16) == (672, 992)  # 1008 > 1000
  assert resize_lib.round_to_multiple((8, 24), 16) == (16, 32)  # halves up, never 0
  rng = np.random.default_rng(3)
  for multiple in (8, 16, 32):
    for shape in rng.integers(20, 700, (300, 2)):
      lowest = -(-111 // multiple) * multiple  # 112, 112, 128
      native = resize_lib.native_size(shape, lowest)  # exact, at least that minimum
      height, width = resize_lib.native_size(shape, 111, multiple=multiple)
      assert height % multiple == 0 and width % multiple == 0
      assert min(height, width) >= 111
      for side, exact in zip((height, width), native):
        assert abs(side - exact) <= multiple / 2, (shape, multiple)
  with pytest.raises(ValueError, match="multiple"):
    resize_lib.round_to_multiple((10, 10), -1)
