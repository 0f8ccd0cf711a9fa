"""PyTorch-exact resizing and pooling for NHWC arrays.

The original network relies on `F.interpolate(..., align_corners=True)`,
`AdaptiveAvgPool2d`, `AvgPool2d(k, stride=k)` and `MaxPool2d(..., ceil_mode=True)`,
which JAX has no exact equivalent of. Resizing and adaptive pooling are linear
maps along each spatial axis, built with numpy at trace time: resizing gathers
each output's two neighbours (`poolnet_jax.imaging.resize`'s taps; its gradient applies
the transposed interpolation matrices), adaptive pooling applies averaging
matrices. All functions take and return (N, H, W, C) arrays.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from poolnet_jax.imaging.resize import (
  interpolation_matrix,
  interpolation_taps,
)  # align_corners=True


@functools.lru_cache(maxsize=None)
def adaptive_pool_matrix(in_size: int, bins: int) -> np.ndarray:
  """(bins, in_size) averaging matrix; bin i covers [floor(i*L/n), ceil((i+1)*L/n))."""
  matrix = np.zeros((bins, in_size), np.float64)
  for i in range(bins):
    start = (i * in_size) // bins
    end = -((-(i + 1) * in_size) // bins)
    matrix[i, start:end] = 1.0 / (end - start)
  return matrix


def _apply_along(x, matrix: np.ndarray, axis: int):
  """`matrix` (out, in) applied along `axis` (1 or 2) of an NHWC array.

  Wide maps go through a matrix product batched over the axes before `axis`,
  so its result is already NHWC (a plain product puts the new axis first and
  XLA:CPU then transposes the whole map); narrow ones, where the broadcast
  matrix would outweigh the map, through a plain product.
  """
  lead = int(np.prod(x.shape[:axis]))
  rest = x.shape[axis + 1 :]
  x3 = x.reshape(lead, x.shape[axis], -1)
  matrix = jnp.asarray(matrix, x.dtype)
  precision = jax.lax.Precision.HIGHEST
  if x3.shape[-1] >= matrix.shape[0]:
    y = jnp.einsum(
      "boi,bix->box", jnp.broadcast_to(matrix, (lead,) + matrix.shape), x3, precision=precision
    )
  else:
    y = jnp.einsum("oi,bix->box", matrix, x3, precision=precision)
  return y.reshape(x.shape[:axis] + (matrix.shape[0],) + rest)


def _apply_separable(x, rows: np.ndarray, cols: np.ndarray):
  """Applies `rows` along H and `cols` along W of an NHWC array."""
  return _apply_along(_apply_along(x, rows, 1), cols, 2)


def _lerp_along(x, taps, axis: int):
  """Linear interpolation along `axis` with (lo, hi, frac) `taps`: two gathers, no products."""
  lo, hi, frac = taps
  shape = [1] * x.ndim
  shape[axis] = len(lo)
  frac = jnp.asarray(frac.reshape(shape), x.dtype)
  take = lambda index: jnp.take(x, index, axis=axis, mode="clip")
  return take(lo) * (1 - frac) + take(hi) * frac


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2))
def _resize(x, size, in_size):
  del in_size  # x's own (H, W); the backward pass needs it
  for axis, out in ((1, size[0]), (2, size[1])):
    x = _lerp_along(x, interpolation_taps(x.shape[axis], out), axis)
  return x


def _resize_forward(x, size, in_size):
  return _resize(x, size, in_size), None


def _resize_backward(size, in_size, residuals, dy):
  """The transposed interpolation as matrix products (autodiff of the gathers would scatter)."""
  del residuals
  rows, cols = (interpolation_matrix(i, o).T for i, o in zip(in_size, size))
  return (_apply_separable(dy, rows, cols),)


_resize.defvjp(_resize_forward, _resize_backward)


def resize_bilinear(x, size):
  """Bilinear resize to `size` = (H, W) with PyTorch's align_corners=True.

  Forward by gathering each output's two neighbours along H then W (memory-bound,
  no multiplications by zero); the gradient by the transposed interpolation matrices.
  """
  size = tuple(int(s) for s in size)
  if tuple(x.shape[1:3]) == size:
    return x
  return _resize(x, size, tuple(x.shape[1:3]))


def adaptive_avg_pool(x, bins: int):
  """Adaptive average pooling to (bins, bins) with PyTorch's bin rule."""
  in_h, in_w = x.shape[1], x.shape[2]
  return _apply_separable(x, adaptive_pool_matrix(in_h, bins), adaptive_pool_matrix(in_w, bins))


def avg_pool(x, k: int):
  """Average pooling with kernel = stride = k, floor mode, no padding."""
  n, h, w, c = x.shape
  out_h, out_w = h // k, w // k
  if out_h == 0 or out_w == 0:
    raise ValueError(f"avg_pool({k}) needs a map of at least {k}x{k}, got {h}x{w}")
  x = x[:, : out_h * k, : out_w * k, :].reshape(n, out_h, k, out_w, k, c)
  return x.mean(axis=(2, 4))


def pool_output_size(size: int, kernel: int, stride: int, pad: int, ceil_mode: bool) -> int:
  """Output length of a PyTorch max pool along one axis."""
  span = size + 2 * pad - kernel
  out = (-(-span // stride) if ceil_mode else span // stride) + 1
  if ceil_mode and (out - 1) * stride >= size + pad:
    out -= 1  # the last window may not start in the right padding
  return out


def max_pool(x, kernel: int = 3, stride: int = 2, pad: int = 1, ceil_mode: bool = False):
  """Max pooling as `nn.MaxPool2d(kernel, stride, pad, ceil_mode=...)`.

  The gradient goes to the first maximum of each window in row-major order, as
  PyTorch's does (`_max_pool_gradient`).
  """
  return _max_pool(x, _pool_geometry(x.shape, kernel, stride, pad, ceil_mode))


def _pool_geometry(shape, kernel, stride, pad, ceil_mode):
  """(kernel, stride, ((top, bottom), (left, right)) padding, (out_h, out_w)) of a max pool."""
  pads, out = [], []
  for size in shape[1:3]:
    out.append(pool_output_size(size, kernel, stride, pad, ceil_mode))
    pads.append((pad, max((out[-1] - 1) * stride + kernel - size - pad, 0)))
  return kernel, stride, tuple(pads), tuple(out)


def _windows(padded, geometry):
  """The kernel * kernel strided views of `padded`, one per window position, row-major."""
  kernel, stride, _, (out_h, out_w) = geometry
  n, c = padded.shape[0], padded.shape[-1]
  return [
    jax.lax.slice(
      padded,
      (0, i, j, 0),
      (n, i + (out_h - 1) * stride + 1, j + (out_w - 1) * stride + 1, c),
      (1, stride, stride, 1),
    )
    for i in range(kernel)
    for j in range(kernel)
  ]


def _pad_for_pool(x, geometry):
  (top, bottom), (left, right) = geometry[2]
  return jnp.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)), constant_values=-jnp.inf)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def _max_pool(x, geometry):
  return functools.reduce(jnp.maximum, _windows(_pad_for_pool(x, geometry), geometry))


def _max_pool_forward(x, geometry):
  y = _max_pool(x, geometry)
  return y, (x, y)


def _max_pool_gradient(geometry, residuals, dy):
  """Each window's gradient to its first maximum in row-major order (PyTorch's rule).

  XLA's own reduce_window gradient computes the positions with a variadic
  reduce_window over index maps, several times slower on CPU.
  """
  x, y = residuals
  kernel, stride, ((top, _), (left, _)), _ = geometry
  padded = _pad_for_pool(x, geometry)
  taken = jnp.zeros(y.shape, bool)
  dx = jnp.zeros(padded.shape, dy.dtype)
  for index, window in enumerate(_windows(padded, geometry)):
    hit = (window == y) & ~taken
    taken = taken | hit
    i, j = divmod(index, kernel)
    placement = (
      [(0, 0, 0)]
      + [
        (start, size - start - (out - 1) * stride - 1, stride - 1)
        for start, size, out in ((i, padded.shape[1], y.shape[1]), (j, padded.shape[2], y.shape[2]))
      ]
      + [(0, 0, 0)]
    )
    dx = dx + jax.lax.pad(jnp.where(hit, dy, 0), jnp.zeros((), dy.dtype), placement)
  return (dx[:, top : top + x.shape[1], left : left + x.shape[2]],)


_max_pool.defvjp(_max_pool_forward, _max_pool_gradient)
