"""Dilated ResNet-50 backbone of PoolNet (output stride 16)."""

from typing import Sequence

import flax.linen as nn

from poolnet_jax.imaging import ops
from poolnet_jax.models.layers import Conv2d, FrozenBatchNorm, ModuleDef, channels

STAGE_WIDTHS = (64, 128, 256, 512)
STAGE_STRIDES = (1, 2, 2, 1)
STAGE_DILATIONS = (1, 1, 1, 2)
EXPANSION = 4
STYLES = ("caffe", "torchvision")


class Bottleneck(nn.Module):
  """1x1 -> 3x3 -> 1x1 residual block with a projection shortcut when asked.

  Caffe style (the authors' backbone) strides the first 1x1 conv; torchvision
  style strides the 3x3 conv.
  """

  planes: int
  stride: int = 1
  dilation: int = 1
  downsample: bool = False
  style: str = "caffe"
  conv: ModuleDef = Conv2d
  norm: ModuleDef = FrozenBatchNorm

  @nn.compact
  def __call__(self, x):
    conv, norm, d = self.conv, self.norm, self.dilation
    s1, s3 = (self.stride, 1) if self.style == "caffe" else (1, self.stride)
    y = nn.relu(norm(name="bn1")(conv(self.planes, 1, stride=s1, name="conv1")(x)))
    y = conv(self.planes, 3, stride=s3, padding=d, dilation=d, name="conv2")(y)
    y = nn.relu(norm(name="bn2")(y))
    y = conv(self.planes * EXPANSION, 1, role="zero", name="conv3")(y)
    y = norm(name="bn3")(y)
    if self.downsample:
      x = Downsample(self.planes * EXPANSION, self.stride, conv, norm, name="downsample")(x)
    return nn.relu(y + x.astype(y.dtype))


class Downsample(nn.Module):
  """Projection shortcut: `Sequential(conv1x1, BN)` with children '0' and '1'."""

  features: int
  stride: int
  conv: ModuleDef = Conv2d
  norm: ModuleDef = FrozenBatchNorm

  @nn.compact
  def __call__(self, x):
    return self.norm(name="1")(self.conv(self.features, 1, stride=self.stride, name="0")(x))


class Stage(nn.Module):
  """A `layerN` of bottlenecks named '0', '1', ...; the first one projects.

  With `remat` each bottleneck keeps only its input for the backward pass and
  recomputes the rest (`nn.remat`; the parameter names are unchanged).
  """

  planes: int
  blocks: int
  stride: int
  dilation: int
  style: str
  conv: ModuleDef = Conv2d
  norm: ModuleDef = FrozenBatchNorm
  remat: bool = False

  @nn.compact
  def __call__(self, x):
    block = nn.remat(Bottleneck) if self.remat else Bottleneck
    for i in range(self.blocks):
      x = block(
        self.planes,
        self.stride if i == 0 else 1,
        self.dilation,
        downsample=i == 0,
        style=self.style,
        conv=self.conv,
        norm=self.norm,
        name=str(i),
      )(x)
    return x


class ResNet(nn.Module):
  """Returns [relu(conv1), layer1, layer2, layer3, layer4]."""

  stages: Sequence[int] = (3, 4, 6, 3)
  width: float = 1.0
  style: str = "caffe"
  conv: ModuleDef = Conv2d
  norm: ModuleDef = FrozenBatchNorm
  remat: bool = False

  @nn.compact
  def __call__(self, x):
    if self.style not in STYLES:
      raise ValueError(f"unknown ResNet style {self.style!r}; expected one of {STYLES}")
    stem = self.conv(channels(64, self.width), 7, stride=2, padding=3, role="input", name="conv1")
    x = nn.relu(self.norm(name="bn1")(stem(x)))
    features = [x]
    x = ops.max_pool(x, 3, 2, 1, ceil_mode=self.style == "caffe")
    for i, blocks in enumerate(self.stages):
      x = Stage(
        channels(STAGE_WIDTHS[i], self.width),
        blocks,
        STAGE_STRIDES[i],
        STAGE_DILATIONS[i],
        self.style,
        self.conv,
        self.norm,
        self.remat,
        name=f"layer{i + 1}",
      )(x)
      features.append(x)
    return features

  @staticmethod
  def feature_channels(width: float = 1.0):
    return [channels(64, width)] + [channels(w, width) * EXPANSION for w in STAGE_WIDTHS]

  @staticmethod
  def feature_sizes(size: int, style: str = "caffe"):
    """Spatial length of each returned feature for an input of length `size`."""
    conv1 = (size + 2 * 3 - 7) // 2 + 1
    x = ops.pool_output_size(conv1, 3, 2, 1, ceil_mode=style == "caffe")
    sizes = [conv1]
    for stride in STAGE_STRIDES:
      x = (x - 1) // stride + 1  # 1x1 (caffe) or 3x3 pad 1 (torchvision): same length
      sizes.append(x)
    return sizes
