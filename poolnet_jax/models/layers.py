"""Building blocks whose parameter names mirror the original's state_dict.

Each Flax module here is named like its PyTorch counterpart, so an original
tensor name maps to a Flax path by splitting it on dots (see torch_io/names.py).
"""

import os
from typing import Any, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from poolnet_jax import ops
from poolnet_jax.models import resize_conv, winograd

Dtype = Any
BN_EPSILON = 1e-5
conv_init = nn.initializers.normal(stddev=0.01)  # the original's N(0, 0.01)
ALGORITHMS = ("fast", "xla")
# Per backend: Winograd on CPU (inference 1.2-1.4x, training 1.1-1.4x, compiles 3x slower;
# BENCHMARKS.md); accelerators' convolution libraries pick their own algorithms.
DEFAULT_ALGORITHM = {"cpu": "fast"}


def channels(c: int, width: float) -> int:
  """Channel count `c` scaled by a width multiplier (multiples of 8, at least 8)."""
  if width == 1.0:
    return c
  return max(8, int(round(c * width / 8)) * 8)


class Conv2d(nn.Module):
  """`nn.Conv2d` in NHWC: HWIO `kernel`, optional `bias`, explicit padding.

  `algorithm` picks how it is computed (the parameters are the same either way):
  "fast" runs 1x1 convolutions as matrix products, stride-1 3x3 ones as
  Winograd F(2x2, 3x3) (models/winograd.py), and those of an upsampled map
  (`resize_to`) without making it where that is cheaper (models/resize_conv.py);
  "xla" always calls `lax.conv_general_dilated`; None (default) takes
  `conv_algorithm()`, which reads $POOLNET_JAX_CONV at trace time.
  """
  features: int
  kernel_size: int = 3
  stride: int = 1
  padding: int = 0
  dilation: int = 1
  use_bias: bool = False
  dtype: Dtype = jnp.float32
  algorithm: Optional[str] = None

  @nn.compact
  def __call__(self, x, resize_to=None):
    """Convolves `x`, or with `resize_to` = (H, W) `ops.resize_bilinear(x, resize_to)`."""
    k = self.kernel_size
    kernel = self.param("kernel", conv_init, (k, k, x.shape[-1], self.features), jnp.float32)
    algorithm = self.algorithm or conv_algorithm()
    x, kernel = x.astype(self.dtype), kernel.astype(self.dtype)
    size = None if resize_to is None else tuple(resize_to)
    if size is not None and self._fuse_resize(x.shape, size, algorithm):
      y = resize_conv.resize_conv3x3(x, kernel, size)
    else:
      if size is not None:
        x = ops.resize_bilinear(x, size)
      y = convolve(x, kernel, self.stride, self.padding, self.dilation, algorithm)
    if self.use_bias:
      bias = self.param("bias", nn.initializers.zeros, (self.features,), jnp.float32)
      y = y + bias.astype(self.dtype)
    return y

  def _fuse_resize(self, shape, size, algorithm):
    """Whether to convolve the resized map without making it (models/resize_conv.py)."""
    return (algorithm == "fast" and size != tuple(shape[1:3])
            and (self.kernel_size, self.stride, self.padding, self.dilation) == (3, 1, 1, 1)
            and resize_conv.worthwhile(shape, size, self.features))


def conv_algorithm() -> str:
  """The process-wide convolution algorithm: $POOLNET_JAX_CONV, else the backend's default
  ("fast" on CPU, "xla" on accelerators)."""
  algorithm = (os.environ.get("POOLNET_JAX_CONV", "")
               or DEFAULT_ALGORITHM.get(jax.default_backend(), "xla"))
  if algorithm not in ALGORITHMS:
    raise ValueError(f"POOLNET_JAX_CONV={algorithm!r}; expected one of {ALGORITHMS}")
  return algorithm


def convolve(x, kernel, stride=1, padding=0, dilation=1, algorithm="fast"):
  """NHWC x HWIO convolution with symmetric `padding`, computed by `algorithm`."""
  if algorithm not in ALGORITHMS:
    raise ValueError(f"unknown convolution algorithm {algorithm!r}; expected one of {ALGORITHMS}")
  k = kernel.shape[0]
  if algorithm == "fast" and k == 1 and padding == 0:
    return jnp.einsum("nhwc,ck->nhwk", x[:, ::stride, ::stride], kernel[0, 0])
  if (algorithm == "fast" and winograd.supports(k, stride, padding, dilation)
      and winograd.worthwhile(x.shape, kernel.shape[3], dilation)):
    return winograd.conv3x3_dilated(x, kernel, dilation)
  if algorithm == "fast" and stride == 1 and min(x.shape[1:3]) < k:
    return _conv_as_matmul(x, kernel, padding, dilation)
  return jax.lax.conv_general_dilated(
      x, kernel, window_strides=(stride, stride), padding=[(padding, padding)] * 2,
      rhs_dilation=(dilation, dilation), dimension_numbers=("NHWC", "HWIO", "NHWC"))


def _conv_as_matmul(x, kernel, padding, dilation):
  """Stride-1 convolution of a map smaller than the kernel: its k*k shifted copies
  side by side, times the kernel, in one matrix product. (XLA:CPU turns such a
  convolution around, kernel as input, and spends 20 ms on a 2x3 map.)"""
  k = kernel.shape[0]
  x = jnp.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
  out_h, out_w = (size - dilation * (k - 1) for size in x.shape[1:3])
  shifted = [x[:, i * dilation:i * dilation + out_h, j * dilation:j * dilation + out_w]
             for i in range(k) for j in range(k)]
  return jnp.einsum("nhwp,pk->nhwk", jnp.concatenate(shifted, axis=-1),
                    kernel.reshape(-1, kernel.shape[-1]))


class FrozenBatchNorm(nn.Module):
  """BatchNorm in inference mode only (the original never updates its statistics).

  `scale` and `bias` live in `params` (frozen by the optimizer), `mean`, `var`
  and the original's `num_batches_tracked` counter in `batch_stats`.
  """
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    c = x.shape[-1]
    scale = self.param("scale", nn.initializers.ones, (c,), jnp.float32)
    bias = self.param("bias", nn.initializers.zeros, (c,), jnp.float32)
    mean = self.variable("batch_stats", "mean", jnp.zeros, (c,), jnp.float32).value
    var = self.variable("batch_stats", "var", jnp.ones, (c,), jnp.float32).value
    self.variable("batch_stats", "num_batches_tracked", jnp.zeros, (), jnp.int32)
    mul = scale * jax.lax.rsqrt(var + BN_EPSILON)
    return (x * mul.astype(self.dtype) + (bias - mean * mul).astype(self.dtype)).astype(self.dtype)


class ConvReLU(nn.Module):
  """`nn.Sequential(conv, ReLU)`: the conv is child '0'; `resize_to` as Conv2d's."""
  features: int
  kernel_size: int = 3
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, resize_to=None):
    conv = Conv2d(self.features, self.kernel_size, padding=self.kernel_size // 2,
                  dtype=self.dtype, name="0")
    return nn.relu(conv(x, resize_to))


class ConvList(nn.Module):
  """A ModuleList of convolutions named by their index, applied one per input."""
  features: Sequence[int]
  kernel_size: int = 1
  use_bias: bool = False
  relu: bool = False
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, inputs):
    outputs = []
    for i, (x, c) in enumerate(zip(inputs, self.features)):
      if self.relu:
        outputs.append(ConvReLU(c, self.kernel_size, self.dtype, name=str(i))(x))
      else:
        conv = Conv2d(c, self.kernel_size, padding=self.kernel_size // 2,
                      use_bias=self.use_bias, dtype=self.dtype, name=str(i))
        outputs.append(conv(x))
    return outputs
