"""Building blocks whose parameter names mirror the original's state_dict.

Each Flax module here is named like its PyTorch counterpart, so an original
tensor name maps to a Flax path by splitting it on dots (see weights/torch_io/names.py).
"""

import dataclasses
import functools
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from poolnet_jax.imaging import ops
from poolnet_jax.imaging.kernels import matmul_conv, resize_conv, winograd
from poolnet_jax.models import init as init_lib

Dtype = Any
ModuleDef = Any  # a module class, or a functools.partial of one (flax examples/imagenet)
BN_EPSILON = 1e-5


@dataclasses.dataclass(frozen=True)
class ConvImpl:
  """How every Conv2d of a model is made and computes (the choices flax's nn.Conv takes
  as constructor arguments).

  `winograd`: 1x1 convolutions as matrix products, stride-1 3x3 ones as Winograd
  F(2x2, 3x3) where worthwhile (kernels/winograd.py), maps smaller than the kernel
  as one matrix product. `resize_conv`: a 3x3 convolution of an upsampled map
  (`resize_to`) without making that map where it needs fewer multiplications
  (kernels/resize_conv.py; exact up to float reassociation). Both off:
  `lax.conv_general_dilated` everywhere, the accelerators' choice. Neither changes
  the parameters. `init`: the kernels' initialisation scheme (models/init.py).
  """

  winograd: bool = False
  resize_conv: bool = False
  init: str = "original"


XLA = ConvImpl()
# Per backend (BENCHMARKS.md): on CPU inference 1.7-1.9x, training 1.3-1.4x, compiles 3x slower.
# Accelerators' convolution libraries pick their own algorithms; resize_conv is
# measured there by `python -m bench.accelerator` before it becomes their default.
BACKEND_DEFAULTS = {"cpu": ConvImpl(winograd=True, resize_conv=True)}
CONV_CHOICES = ("fast", "xla")  # names for command lines and configs


def conv_impl(conv=None, resize=None, backend=None) -> ConvImpl:
  """The ConvImpl for `conv` ("fast": Winograd and resize_conv, "xla": neither, None:
  the backend's default), with `resize` (a bool) overriding resize_conv."""
  if conv is None or conv == "":
    impl = BACKEND_DEFAULTS.get(backend or jax.default_backend(), XLA)
  elif conv in CONV_CHOICES:
    impl = ConvImpl(winograd=True, resize_conv=True) if conv == "fast" else XLA
  else:
    raise ValueError(
      f"unknown convolution implementation {conv!r}; expected one of "
      f"{CONV_CHOICES} or None (the backend's default)"
    )
  return impl if resize is None else dataclasses.replace(impl, resize_conv=bool(resize))


def channels(c: int, width: float) -> int:
  """Channel count `c` scaled by a width multiplier (multiples of 8, at least 8)."""
  if width == 1.0:
    return c
  return max(8, int(round(c * width / 8)) * 8)


class Conv2d(nn.Module):
  """`nn.Conv2d` in NHWC: HWIO `kernel`, optional `bias`, explicit padding, computed
  as `impl` says (ConvImpl); `role` (models/init.py) picks the kernel's initializer.

  PoolNet binds `dtype` and `impl` once (`conv_def`) and hands the partial to every
  module as its `conv` field, as flax's examples/imagenet hands `conv` to its blocks."""

  features: int
  kernel_size: int = 3
  stride: int = 1
  padding: int = 0
  dilation: int = 1
  use_bias: bool = False
  dtype: Dtype = jnp.float32
  impl: ConvImpl = XLA
  role: str = "hidden"

  @nn.compact
  def __call__(self, x, resize_to=None):
    """Convolves `x`, or with `resize_to` = (H, W) `ops.resize_bilinear(x, resize_to)`."""
    k = self.kernel_size
    kernel = self.param(
      "kernel",
      init_lib.kernel_init(self.impl.init, self.role),
      (k, k, x.shape[-1], self.features),
      jnp.float32,
    )
    x, kernel = x.astype(self.dtype), kernel.astype(self.dtype)
    size = None if resize_to is None else tuple(resize_to)
    if size is not None and self._fuse_resize(x.shape, size):
      y = resize_conv.resize_conv3x3(x, kernel, size)
    else:
      if size is not None:
        x = ops.resize_bilinear(x, size)
      y = convolve(x, kernel, self.stride, self.padding, self.dilation, self.impl)
    if self.use_bias:  # added in float32, so its gradient is a float32 sum over pixels
      bias = self.param("bias", nn.initializers.zeros, (self.features,), jnp.float32)
      y = (y.astype(jnp.float32) + bias).astype(self.dtype)
    return y

  def _fuse_resize(self, shape, size):
    """Whether to convolve the resized map without making it (kernels/resize_conv.py)."""
    return (
      self.impl.resize_conv
      and size != tuple(shape[1:3])
      and (self.kernel_size, self.stride, self.padding, self.dilation) == (3, 1, 1, 1)
      and resize_conv.worthwhile(shape, size, self.features, self.impl.winograd)
    )


def conv_def(dtype: Dtype = jnp.float32, impl: ConvImpl = XLA) -> ModuleDef:
  """Conv2d with the model's compute dtype and implementation bound."""
  return functools.partial(Conv2d, dtype=dtype, impl=impl)


def convolve(x, kernel, stride=1, padding=0, dilation=1, impl=XLA):
  """NHWC x HWIO convolution with symmetric `padding`, computed as `impl` says."""
  k = kernel.shape[0]
  if impl.winograd and k == 1 and padding == 0:
    return matmul_conv.conv1x1(x, kernel, stride)
  if (
    impl.winograd
    and winograd.supports(k, stride, padding, dilation)
    and winograd.worthwhile(x.shape, kernel.shape[3], dilation)
  ):
    return winograd.conv3x3_dilated(x, kernel, dilation)
  if impl.winograd and stride == 1 and min(x.shape[1:3]) < k:
    return matmul_conv.small_map_conv(x, kernel, padding, dilation)
  return jax.lax.conv_general_dilated(
    x,
    kernel,
    window_strides=(stride, stride),
    padding=[(padding, padding)] * 2,
    rhs_dilation=(dilation, dilation),
    dimension_numbers=("NHWC", "HWIO", "NHWC"),
  )


class FrozenBatchNorm(nn.Module):
  """BatchNorm in inference mode only (the original never updates its statistics).

  `scale` and `bias` live in `params` (frozen by the optimizer), `mean`, `var`
  and the original's `num_batches_tracked` counter in `batch_stats`. The affine
  map is applied in float32 whatever `dtype` the output takes.
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
    # Scale and shift in float32 (bf16 would round the folded statistics); one fused pass.
    return (x.astype(jnp.float32) * mul + (bias - mean * mul)).astype(self.dtype)


class ConvReLU(nn.Module):
  """`nn.Sequential(conv, ReLU)`: the conv is child '0'; `resize_to` as Conv2d's."""

  features: int
  kernel_size: int = 3
  conv: ModuleDef = Conv2d

  @nn.compact
  def __call__(self, x, resize_to=None):
    conv = self.conv(self.features, self.kernel_size, padding=self.kernel_size // 2, name="0")
    return nn.relu(conv(x, resize_to))


class ConvList(nn.Module):
  """A ModuleList of convolutions named by their index, applied one per input."""

  features: Sequence[int]
  kernel_size: int = 1
  use_bias: bool = False
  relu: bool = False
  conv: ModuleDef = Conv2d
  role: str = "hidden"

  @nn.compact
  def __call__(self, inputs):
    outputs = []
    for i, (x, c) in enumerate(zip(inputs, self.features)):
      if self.relu:
        outputs.append(ConvReLU(c, self.kernel_size, self.conv, name=str(i))(x))
      else:
        conv = self.conv(
          c,
          self.kernel_size,
          padding=self.kernel_size // 2,
          use_bias=self.use_bias,
          role=self.role,
          name=str(i),
        )
        outputs.append(conv(x))
    return outputs
