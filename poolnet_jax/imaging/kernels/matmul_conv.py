"""Convolutions that are better written as one matrix product on the CPU."""

import jax.numpy as jnp


def conv1x1(x, kernel, stride=1):
  """NHWC x (1, 1, C, K) convolution without padding as one matrix product."""
  return jnp.einsum("nhwc,ck->nhwk", x[:, ::stride, ::stride], kernel[0, 0])


def small_map_conv(x, kernel, padding, dilation):
  """Stride-1 convolution of a map smaller than the kernel: its k*k shifted copies
  side by side, times the kernel, in one matrix product. (XLA:CPU turns such a
  convolution around, kernel as input, and spends 20 ms on a 2x3 map.)"""
  k = kernel.shape[0]
  x = jnp.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
  out_h, out_w = (size - dilation * (k - 1) for size in x.shape[1:3])
  shifted = [
    x[:, i * dilation : i * dilation + out_h, j * dilation : j * dilation + out_w]
    for i in range(k)
    for j in range(k)
  ]
  return jnp.einsum(
    "nhwp,pk->nhwk", jnp.concatenate(shifted, axis=-1), kernel.reshape(-1, kernel.shape[-1])
  )
