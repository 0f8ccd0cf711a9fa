"""PyTorch-exact resizing and pooling for NHWC arrays.

The original network relies on `F.interpolate(..., align_corners=True)`,
`AdaptiveAvgPool2d`, `AvgPool2d(k, stride=k)` and `MaxPool2d(..., ceil_mode=True)`,
which JAX has no exact equivalent of. Resizing and adaptive pooling are linear
maps along each spatial axis, so they are built as small matrices with numpy at
trace time and applied with matrix products: exact, differentiable and fast on
accelerators. All functions take and return (N, H, W, C) arrays.
"""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np


@functools.lru_cache(maxsize=None)
def interpolation_matrix(in_size: int, out_size: int) -> np.ndarray:
  """(out_size, in_size) matrix of linear interpolation with aligned corners.

  Output i samples source coordinate i * (in - 1) / (out - 1), or 0 when
  out_size == 1, linearly between its floor and floor + 1.
  """
  matrix = np.zeros((out_size, in_size), np.float64)
  scale = (in_size - 1) / (out_size - 1) if out_size > 1 else 0.0
  for i in range(out_size):
    src = i * scale
    lo = min(int(math.floor(src)), in_size - 1)
    hi = min(lo + 1, in_size - 1)
    frac = src - lo
    matrix[i, lo] += 1.0 - frac
    matrix[i, hi] += frac
  return matrix


@functools.lru_cache(maxsize=None)
def adaptive_pool_matrix(in_size: int, bins: int) -> np.ndarray:
  """(bins, in_size) averaging matrix; bin i covers [floor(i*L/n), ceil((i+1)*L/n))."""
  matrix = np.zeros((bins, in_size), np.float64)
  for i in range(bins):
    start = (i * in_size) // bins
    end = -((-(i + 1) * in_size) // bins)
    matrix[i, start:end] = 1.0 / (end - start)
  return matrix


def _apply_separable(x, rows: np.ndarray, cols: np.ndarray):
  """Applies `rows` along H and `cols` along W of an NHWC array."""
  rows = jnp.asarray(rows, x.dtype)
  cols = jnp.asarray(cols, x.dtype)
  precision = jax.lax.Precision.HIGHEST
  x = jnp.einsum("oh,nhwc->nowc", rows, x, precision=precision)
  return jnp.einsum("pw,nowc->nopc", cols, x, precision=precision)


def resize_bilinear(x, size):
  """Bilinear resize to `size` = (H, W) with PyTorch's align_corners=True."""
  out_h, out_w = size
  in_h, in_w = x.shape[1], x.shape[2]
  if (in_h, in_w) == (out_h, out_w):
    return x
  return _apply_separable(
      x, interpolation_matrix(in_h, out_h), interpolation_matrix(in_w, out_w))


def adaptive_avg_pool(x, bins: int):
  """Adaptive average pooling to (bins, bins) with PyTorch's bin rule."""
  in_h, in_w = x.shape[1], x.shape[2]
  return _apply_separable(
      x, adaptive_pool_matrix(in_h, bins), adaptive_pool_matrix(in_w, bins))


def avg_pool(x, k: int):
  """Average pooling with kernel = stride = k, floor mode, no padding."""
  n, h, w, c = x.shape
  out_h, out_w = h // k, w // k
  if out_h == 0 or out_w == 0:
    raise ValueError(f"avg_pool({k}) needs a map of at least {k}x{k}, got {h}x{w}")
  x = x[:, :out_h * k, :out_w * k, :].reshape(n, out_h, k, out_w, k, c)
  return x.mean(axis=(2, 4))


def pool_output_size(size: int, kernel: int, stride: int, pad: int, ceil_mode: bool) -> int:
  """Output length of a PyTorch max pool along one axis."""
  span = size + 2 * pad - kernel
  out = (-(-span // stride) if ceil_mode else span // stride) + 1
  if ceil_mode and (out - 1) * stride >= size + pad:
    out -= 1  # the last window may not start in the right padding
  return out


def max_pool(x, kernel: int = 3, stride: int = 2, pad: int = 1, ceil_mode: bool = False):
  """Max pooling as `nn.MaxPool2d(kernel, stride, pad, ceil_mode=...)`."""
  pads = [(0, 0)]
  for size in x.shape[1:3]:
    out = pool_output_size(size, kernel, stride, pad, ceil_mode)
    pads.append((pad, max((out - 1) * stride + kernel - size - pad, 0)))
  pads.append((0, 0))
  return jax.lax.reduce_window(
      x, -jnp.inf, jax.lax.max, (1, kernel, kernel, 1), (1, stride, stride, 1), pads)
