"""A 3x3 convolution of a bilinearly upsampled map, computed without the upsampled map.

Resizing mixes positions and a convolution tap mixes channels, so they commute:
conv3x3(resize(x)) is the sum over taps (i, j) of resize(x @ W[i, j]) shifted by
(i - 1, j - 1). The channel products run at the input's size, and each axis's
resize and shift become one small matrix per tap offset (`shifted_interpolation`).
PoolNet's guiding flows upsample a 19x26 map up to 150x200 before a 3x3
convolution: this way the largest one needs 1.2 GFLOP instead of 15.7 (Winograd),
and neither the upsampled map nor its Winograd transform is ever stored.
Only reassociation changes the float32 rounding.
"""

import functools

import jax.numpy as jnp
import numpy as np

from poolnet_jax.imaging import ops


@functools.lru_cache(maxsize=None)
def shifted_interpolation(in_size: int, out_size: int) -> np.ndarray:
  """(3, out_size, in_size): slice i interpolates output position p + i - 1 into row p,
  a zero row where that position is outside the map (the convolution's padding)."""
  padded = np.pad(ops.interpolation_matrix(in_size, out_size), ((1, 1), (0, 0)))
  return np.stack([padded[i : i + out_size] for i in range(3)])


def flops(input_shape, size, channels_out):
  """Multiply-adds of `resize_conv3x3` and of Winograd F(2x2, 3x3) on the resized map
  (a direct convolution needs 9/4 of Winograd's)."""
  n, h, w, c = input_shape
  out_h, out_w = size
  k = channels_out
  fused = n * (h * w * c * 9 * k + h * 3 * k * out_w * 3 * w + out_w * k * out_h * 3 * h)
  winograd = n * out_h * out_w * 4 * c * k
  return fused, winograd


def worthwhile(input_shape, size, channels_out, winograd=True):
  """Whether the fused form needs no more multiplications than the convolution of the
  resized map would: Winograd's (`winograd`) or a direct one's.

  Against Winograd: true for the guiding flows (upsampling 2-8x) and the FAMs' 2x
  upsampling of maps up to 38x51; the 76x101 -> 150x200 one would need 1.25x.
  """
  fused, winograd_flops = flops(input_shape, size, channels_out)
  return fused <= (winograd_flops if winograd else winograd_flops * 9 // 4)


def resize_conv3x3(x, kernel, size):
  """conv3x3(resize_bilinear(x, size)) with padding 1: NHWC `x`, HWIO `kernel`."""
  rows, cols = (
    jnp.asarray(shifted_interpolation(i, o), x.dtype) for i, o in zip(x.shape[1:3], size)
  )
  taps = jnp.einsum("nhwc,ijck->nhwijk", x, kernel)
  along_w = jnp.einsum("jqw,nhwijk->nhqik", cols, taps)
  return jnp.einsum("iph,nhqik->npqk", rows, along_w)
