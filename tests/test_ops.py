"""poolnet_jax.imaging.ops against torch.nn.functional on random inputs, values and gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from poolnet_jax.imaging import ops

TOL = 1e-5


def _random(shape, seed):
  return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def _nchw(x):
  return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))).requires_grad_(True)


def _check(jax_fn, torch_fn, x, seed=0):
  """Compares outputs and the gradients of <output, cotangent>."""
  y = jax.jit(jax_fn)(jnp.asarray(x))  # jitted: op-by-op dispatch compiles every op apart
  xt = _nchw(x)
  yt = torch_fn(xt)
  np.testing.assert_allclose(
    np.asarray(y), yt.detach().numpy().transpose(0, 2, 3, 1), atol=TOL, rtol=0
  )
  cot = _random(y.shape, seed + 1)
  grad = jax.jit(jax.grad(lambda v: jnp.sum(jax_fn(v) * cot)))(jnp.asarray(x))
  (yt * torch.from_numpy(cot.transpose(0, 3, 1, 2).copy())).sum().backward()
  expected = xt.grad.numpy().transpose(0, 2, 3, 1)
  # A gradient sums many products: hold it to TOL relative to its own scale.
  np.testing.assert_allclose(
    np.asarray(grad), expected, atol=TOL * max(1.0, np.abs(expected).max()), rtol=0
  )


@pytest.mark.parametrize("in_h,in_w", [(1, 1), (5, 8), (19, 26), (38, 51), (7, 2)])
def test_resize_bilinear_matches_torch(in_h, in_w):
  x = _random((2, in_h, in_w, 3), in_h * 100 + in_w)
  for out_h, out_w in [(1, 1), (4, 9), (76, 101), (3, 2), (in_h, in_w + 1)]:
    _check(
      lambda v: ops.resize_bilinear(v, (out_h, out_w)),
      lambda t: F.interpolate(t, (out_h, out_w), mode="bilinear", align_corners=True),
      x,
    )


def test_resize_to_same_size_is_identity():
  x = jnp.asarray(_random((1, 6, 7, 2), 0))
  assert ops.resize_bilinear(x, (6, 7)) is x


@pytest.mark.parametrize("bins", [1, 3, 5])
def test_adaptive_avg_pool_matches_torch(bins):
  for h, w in [(1, 3), (5, 9), (8, 25), (19, 26), (26, 19)]:
    x = _random((1, h, w, 2), h * 31 + w)
    _check(lambda v: ops.adaptive_avg_pool(v, bins), lambda t: F.adaptive_avg_pool2d(t, bins), x)


@pytest.mark.parametrize("k", [2, 4, 8])
def test_avg_pool_matches_torch(k):
  for h, w in [(k, 9), (13, 8), (19, 26), (33, 19)]:
    x = _random((2, h, w, 3), h * 17 + w)
    _check(lambda v: ops.avg_pool(v, k), lambda t: F.avg_pool2d(t, k, stride=k), x)


def test_avg_pool_too_small_names_the_limit():
  with pytest.raises(ValueError, match="at least 8x8"):
    ops.avg_pool(jnp.zeros((1, 7, 9, 1)), 8)


@pytest.mark.parametrize("ceil_mode", [True, False])
def test_max_pool_matches_torch(ceil_mode):
  for h, w in [(2, 3), (5, 8), (13, 16), (19, 26), (150, 200), (151, 199), (8, 13)]:
    x = _random((1, h, w, 2), h * 1000 + w)
    _check(
      lambda v: ops.max_pool(v, 3, 2, 1, ceil_mode),
      lambda t: F.max_pool2d(t, 3, 2, 1, ceil_mode=ceil_mode),
      x,
    )


def test_max_pool_stride_one_matches_torch():
  x = _random((1, 9, 10, 2), 7)
  _check(lambda v: ops.max_pool(v, 3, 1, 1), lambda t: F.max_pool2d(t, 3, 1, 1), x)


@pytest.mark.parametrize("size", range(1, 40))
def test_pool_output_size_matches_torch(size):
  for ceil_mode in (True, False):
    expected = F.max_pool2d(torch.zeros(1, 1, size, size), 3, 2, 1, ceil_mode=ceil_mode).shape[-1]
    assert ops.pool_output_size(size, 3, 2, 1, ceil_mode) == expected


def test_max_pool_gradient_goes_to_the_first_maximum_like_torch():
  # Small integers after a ReLU: most windows hold several equal maxima (zeros and others).
  x = np.maximum(np.round(_random((2, 17, 23, 3), 11)), 0).astype(np.float32)
  for ceil_mode in (True, False):
    _check(
      lambda v: ops.max_pool(v, 3, 2, 1, ceil_mode),
      lambda t: F.max_pool2d(t, 3, 2, 1, ceil_mode=ceil_mode),
      x,
    )
