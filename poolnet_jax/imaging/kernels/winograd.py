"""Winograd F(2x2, 3x3) convolution: 16 multiplications per 2x2 output tile instead of 36.

Stride-1 3x3 convolutions dominate PoolNet's work. Each 4x4 input tile d (stride 2)
and each 3x3 kernel g are taken to the Winograd domain, V = B^T d B and
U = G g G^T; sixteen matrix products M[a, b] = V[a, b] @ U[a, b] over the channels
replace the convolution's nine, and Y = A^T M A gives the 2x2 output tile. The
transforms use only 0, +-1 and +-1/2, so float32 results stay at the direct
convolution's rounding level. Dilated kernels (padding == dilation) are split into
dilation^2 interleaved sub-images, each a plain padded 3x3 convolution.

Everything is jnp; the gradients are Winograd convolutions too (`_gradients`).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

# Lavin & Gray (2016), F(2, 3).
B_T = np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], np.float32)
G = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]], np.float32)
A_T = np.array([[1, 1, 1, 0], [0, 1, -1, -1]], np.float32)
# Winograd-domain input per band in inference, measured best on a 2-core Zen 5 (BENCHMARKS.md).
CHUNK_BYTES = 8 << 20
# Below these, XLA's direct convolution is faster (2-core Zen 3 and Zen 5, BENCHMARKS.md).
MIN_TILES = 400
MIN_CHANNELS = 64  # narrower ones lose: the transforms are memory-bound (the 1/8-width demo: 0.7x)


def supports(kernel_size, stride, padding, dilation):
  """Whether a convolution with these settings keeps its size and can go through Winograd."""
  return kernel_size == 3 and stride == 1 and padding == dilation


def worthwhile(input_shape, channels_out, dilation=1):
  """Whether Winograd beats XLA's convolution for this NHWC input (measured, BENCHMARKS.md).

  Small maps lose: the per-call kernel transform and short matrix products cost
  more than the saved multiplications. So do few input channels.
  """
  n, h, w, c = input_shape
  tiles = n * dilation**2 * -(-h // (2 * dilation)) * -(-w // (2 * dilation))
  return tiles >= MIN_TILES and min(c, channels_out) >= MIN_CHANNELS


def _combine(parts, matrix):
  """Rows of `matrix` applied to the list `parts` as explicit sums (no multiply by 0 or 1)."""
  out = []
  for row in matrix:
    total = None
    for coefficient, part in zip(row, parts):
      if coefficient == 0:
        continue
      term = part if abs(coefficient) == 1 else part * abs(coefficient).astype(part.dtype)
      if total is None:
        total = -term if coefficient < 0 else term
      else:
        total = total - term if coefficient < 0 else total + term
    out.append(total)
  return out


def transform_kernel(kernel):
  """HWIO (3, 3, C, K) -> (16, C, K), U = G g G^T flattened over the 4x4 tile."""
  rows = _combine([kernel[i] for i in range(3)], G)  # each (3, C, K)
  return jnp.stack([p for r in rows for p in _combine([r[j] for j in range(3)], G)])


def transform_input(x, tiles):
  """Padded NHWC (N, 2*th + 2, 2*tw + 2, C) -> two (8, N * th * tw, C) halves of V = B^T d B.

  Two halves because XLA:CPU fuses a stack of up to 8 computed slices into one
  pass over x, but splits a stack of 16 into 16 passes and a copy.
  """
  th, tw = tiles
  rows = _combine([x[:, a : a + 2 * th : 2] for a in range(4)], B_T)
  v = [p for r in rows for p in _combine([r[:, :, b : b + 2 * tw : 2] for b in range(4)], B_T)]
  n, c = x.shape[0], x.shape[-1]
  return [jnp.stack(half).reshape(8, n * th * tw, c) for half in (v[:8], v[8:])]


def transform_output(m, batch, tiles):
  """Two (8, N * th * tw, K) halves of M -> NHWC (N, 2 * th, 2 * tw, K), Y = A^T M A."""
  th, tw = tiles
  k = m[0].shape[-1]
  m = [h.reshape(8, batch, th, tw, k) for h in m]
  m = [m[a // 2][(a % 2) * 4 : (a % 2) * 4 + 4] for a in range(4)]  # m[a]: (4, N, th, tw, K)
  rows = _combine(m, A_T)  # each (4, N, th, tw, K)
  y = [_combine([r[b] for b in range(4)], A_T) for r in rows]  # y[i][j]: (N, th, tw, K)
  y = jnp.stack([jnp.stack(row, axis=3) for row in y], axis=2)  # (N, th, 2, tw, 2, K)
  return y.reshape(batch, 2 * th, 2 * tw, k)


def _tile_rows_per_chunk(n, tiles, channels, kernel_bytes):
  """Tile rows per band: a band's V of about CHUNK_BYTES (in cache), or at least as large
  as the transformed kernel U, which every band reads again."""
  row_bytes = 16 * n * tiles[1] * channels * 4
  return max(1, min(tiles[0], max(CHUNK_BYTES, kernel_bytes) // row_bytes))


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def conv3x3(x, kernel, precision=None):
  """Stride-1 3x3 convolution with padding 1, NHWC input and HWIO kernel.

  Without gradients the map is cut into bands of tile rows (a `lax.map`), so
  each band's Winograd-domain input, 4x the band's size, is used while it is
  still in cache; under differentiation bands cost more than they save
  (BENCHMARKS.md). The gradients are computed by `_gradients`, not by autodiff.
  """
  return _conv3x3(x, kernel, precision, banded=True)


def _conv3x3_forward(x, kernel, precision):
  return _conv3x3(x, kernel, precision, banded=False), (x, kernel)


def _gradients(precision, residuals, dy):
  """Input gradient: `dy` convolved with the kernel turned by 180 degrees, its channels
  swapped (Winograd again). Kernel gradient in the Winograd domain, dU = V^T dM, from
  the input's V (recomputed: nothing 4x the map's size is kept) and dy's dM.

  Autodiff would instead add the 16 shifted tiles' gradients back into the map, which
  costs more than a second Winograd convolution.
  """
  x, kernel = residuals
  dx = _conv3x3(dy, jnp.flip(kernel, (0, 1)).swapaxes(2, 3), precision, banded=False)
  n, h, w, _ = x.shape
  tiles = th, tw = -(-h // 2), -(-w // 2)
  v = transform_input(_pad_to_tiles(x, th, tw), tiles)
  dy = jnp.pad(dy, ((0, 0), (0, 2 * th - h), (0, 2 * tw - w), (0, 0)))
  m = [jax.ShapeDtypeStruct((8, n * th * tw, dy.shape[-1]), dy.dtype)] * 2
  (dm,) = jax.linear_transpose(lambda m: transform_output(m, n, tiles), m)(dy)
  du = jnp.concatenate(
    [jnp.einsum("tpc,tpk->tck", a, b, precision=precision) for a, b in zip(v, dm)]
  )
  (dk,) = jax.linear_transpose(transform_kernel, jax.ShapeDtypeStruct(kernel.shape, kernel.dtype))(
    du
  )
  return dx, dk


conv3x3.defvjp(_conv3x3_forward, _gradients)


def _pad_to_tiles(x, tile_rows, tile_cols):
  """The convolution's one-pixel zero border, then zeros up to whole 2x2 tiles (and the
  last band's overhang): (N, 2 * tile_rows + 2, 2 * tile_cols + 2, C)."""
  h, w = x.shape[1:3]
  return jnp.pad(x, ((0, 0), (1, 1 + 2 * tile_rows - h), (1, 1 + 2 * tile_cols - w), (0, 0)))


def _conv3x3(x, kernel, precision, banded):
  """`conv3x3`, in bands of about CHUNK_BYTES if `banded`, else in one piece."""
  n, h, w, c = x.shape
  th, tw = -(-h // 2), -(-w // 2)
  rows = _tile_rows_per_chunk(n, (th, tw), c, 16 * kernel.size // 9 * 4) if banded else th
  chunks = -(-th // rows)
  x = _pad_to_tiles(x, chunks * rows, tw)
  u = transform_kernel(kernel.astype(x.dtype))

  def band(i):
    xs = jax.lax.dynamic_slice_in_dim(x, i * 2 * rows, 2 * rows + 2, axis=1)
    m = [
      jnp.einsum("tpc,tck->tpk", v, u[8 * j : 8 * j + 8], precision=precision)
      for j, v in enumerate(transform_input(xs, (rows, tw)))
    ]
    return transform_output(m, n, (rows, tw))

  y = jax.lax.map(band, jnp.arange(chunks)) if chunks > 1 else band(0)[None]
  y = jnp.moveaxis(y, 0, 1).reshape(n, 2 * chunks * rows, 2 * tw, -1)
  return y[:, :h, :w]


def conv3x3_dilated(x, kernel, dilation=1, precision=None):
  """Stride-1 3x3 convolution with padding == dilation, through conv3x3 on sub-images."""
  if dilation == 1:
    return conv3x3(x, kernel, precision)
  d = dilation
  n, h, w, c = x.shape
  hp, wp = -(-h // d) * d, -(-w // d) * d
  # Zero rows at the end are the padding the original sees anyway: outputs are unchanged.
  x = jnp.pad(x, ((0, 0), (0, hp - h), (0, wp - w), (0, 0)))
  x = x.reshape(n, hp // d, d, wp // d, d, c).transpose(2, 4, 0, 1, 3, 5)
  y = conv3x3(x.reshape(d * d * n, hp // d, wp // d, c), kernel, precision)
  k = y.shape[-1]
  y = y.reshape(d, d, n, hp // d, wp // d, k).transpose(2, 3, 0, 4, 1, 5)
  return y.reshape(n, hp, wp, k)[:, :h, :w]
