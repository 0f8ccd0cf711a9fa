"""Building blocks whose parameter names mirror the original's state_dict.

Each Flax module here is named like its PyTorch counterpart, so an original
tensor name maps to a Flax path by splitting it on dots (see torch_io/names.py).
"""

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

Dtype = Any
BN_EPSILON = 1e-5
conv_init = nn.initializers.normal(stddev=0.01)  # the original's N(0, 0.01)


def channels(c: int, width: float) -> int:
  """Channel count `c` scaled by a width multiplier (multiples of 8, at least 8)."""
  if width == 1.0:
    return c
  return max(8, int(round(c * width / 8)) * 8)


class Conv2d(nn.Module):
  """`nn.Conv2d` in NHWC: HWIO `kernel`, optional `bias`, explicit padding."""
  features: int
  kernel_size: int = 3
  stride: int = 1
  padding: int = 0
  dilation: int = 1
  use_bias: bool = False
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    k = self.kernel_size
    kernel = self.param("kernel", conv_init, (k, k, x.shape[-1], self.features), jnp.float32)
    y = jax.lax.conv_general_dilated(
        x.astype(self.dtype), kernel.astype(self.dtype),
        window_strides=(self.stride, self.stride),
        padding=[(self.padding, self.padding)] * 2,
        rhs_dilation=(self.dilation, self.dilation),
        dimension_numbers=("NHWC", "HWIO", "NHWC"))
    if self.use_bias:
      bias = self.param("bias", nn.initializers.zeros, (self.features,), jnp.float32)
      y = y + bias.astype(self.dtype)
    return y


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
  """`nn.Sequential(conv, ReLU)`: the conv is child '0'."""
  features: int
  kernel_size: int = 3
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    conv = Conv2d(self.features, self.kernel_size, padding=self.kernel_size // 2,
                  dtype=self.dtype, name="0")
    return nn.relu(conv(x))


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
