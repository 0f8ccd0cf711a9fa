"""PoolNet: global guidance module, feature aggregation modules, score head, edge branch.

Module names follow the original's state_dict (`base.ppms.0.1`, `deep_pool.2.convs.1`,
...), so converting weights is a renaming table (torch_io/names.py).
"""

import functools
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from poolnet_jax.imaging import ops
from poolnet_jax.models.layers import (
  XLA,
  Conv2d,
  ConvImpl,
  ConvList,
  ConvReLU,
  FrozenBatchNorm,
  ModuleDef,
  channels,
  conv_def,
)
from poolnet_jax.models.resnet import ResNet
from poolnet_jax.models.vgg import VGG16

PYRAMID_BINS = (1, 3, 5)
FAM_POOLS = (2, 4, 8)
GGM_CHANNELS = 512
EDGE_CHANNELS = 16  # width of each block layer's output
EDGE_INFO_CHANNELS = 128
# Per backbone: its module's name under `base`, guiding-flow widths, FAM rows (k, k_out,
# need_x2, need_fuse), convert-layer widths (ResNet only).
DECODER = {
  "resnet50": dict(
    module="resnet",
    infos=(512, 256, 256, 128),
    fam=(
      (512, 512, False, True),
      (512, 256, True, True),
      (256, 256, True, True),
      (256, 128, True, True),
      (128, 128, False, False),
    ),
    convert=(128, 256, 256, 512, 512),
  ),
  "vgg16": dict(
    module="vgg16",
    infos=(512, 256, 128),
    fam=(
      (512, 512, True, True),
      (512, 256, True, True),
      (256, 128, True, True),
      (128, 128, False, False),
    ),
    convert=None,
  ),
}


def _size(x):
  return x.shape[1], x.shape[2]


class PoolBranch(nn.Module):
  """`Sequential(AdaptiveAvgPool2d(bins), conv1x1, ReLU)`: the conv is child '1'."""

  features: int
  bins: int
  conv: ModuleDef = Conv2d

  @nn.compact
  def __call__(self, x):
    y = nn.relu(self.conv(self.features, 1, name="1")(ops.adaptive_avg_pool(x, self.bins)))
    return ops.resize_bilinear(y, _size(x))


class PyramidPooling(nn.Module):
  """`ppms`: one PoolBranch per bin size, named '0', '1', '2'."""

  features: int
  conv: ModuleDef = Conv2d

  @nn.compact
  def __call__(self, x):
    return [
      PoolBranch(self.features, bins, self.conv, name=str(i))(x)
      for i, bins in enumerate(PYRAMID_BINS)
    ]


class GuidingFlows(nn.Module):
  """`infos`: the guidance map resized to each feature, then 3x3 conv + ReLU."""

  features: Sequence[int]
  conv: ModuleDef = Conv2d

  @nn.compact
  def __call__(self, guidance, sizes):
    return [
      ConvReLU(c, 3, self.conv, name=str(i))(guidance, resize_to=size)
      for i, (c, size) in enumerate(zip(self.features, sizes))
    ]


class Base(nn.Module):
  """The original's `base`: backbone plus the Global Guidance Module.

  `backbone` is ResNet or VGG16 with its options bound, `kind` its key of DECODER.
  Returns the backbone features (finest first) and the guiding flows (coarsest first).
  """

  kind: str
  backbone: ModuleDef
  width: float = 1.0
  conv: ModuleDef = Conv2d

  @nn.compact
  def __call__(self, x):
    w, conv = self.width, self.conv
    ggm = channels(GGM_CHANNELS, w)
    features = self.backbone(name=DECODER[self.kind]["module"])(x)
    top = conv(ggm, 1, name="ppms_pre")(features[-1]) if self.kind == "resnet50" else features[-1]
    pooled = PyramidPooling(ggm, conv, name="ppms")(top)
    guidance = ConvReLU(ggm, 3, conv, name="ppm_cat")(jnp.concatenate([top] + pooled, axis=-1))
    flow_widths = [channels(c, w) for c in DECODER[self.kind]["infos"]]
    sizes = [_size(f) for f in features[len(flow_widths) - 1 :: -1]]
    return features, GuidingFlows(flow_widths, conv, name="infos")(guidance, sizes)


class FeatureAggregation(nn.Module):
  """FAM (`deep_pool.k`): multi-scale average pooling branches added to the input."""

  k: int
  k_out: int
  need_x2: bool
  need_fuse: bool
  conv: ModuleDef = Conv2d

  @nn.compact
  def __call__(self, x, x2=None, x3=None):
    # Each branch is summed with x and the others before the ReLU: role "sum3".
    branches = ConvList(
      [self.k] * len(FAM_POOLS), 3, conv=self.conv, role=f"sum{len(FAM_POOLS)}", name="convs"
    )
    pooled = branches([ops.avg_pool(x, p) for p in FAM_POOLS])
    r = x
    for y in pooled:
      r = r + ops.resize_bilinear(y, _size(x))
    r = nn.relu(r)
    r = self.conv(self.k_out, 3, padding=1, role="sum1", name="conv_sum")(
      r, resize_to=_size(x2) if self.need_x2 else None
    )
    if self.need_fuse:
      r = self.conv(self.k_out, 3, padding=1, role="sum3", name="conv_sum_c")(r + x2 + x3)
    return r


class Decoder(nn.Module):
  """`deep_pool`: the FAMs, coarsest first. Returns every intermediate merge.

  With `remat` each FAM keeps only its inputs for the backward pass.
  """

  rows: Sequence[Sequence[Any]]
  conv: ModuleDef = Conv2d
  remat: bool = False

  @nn.compact
  def __call__(self, features, flows, last: bool = True):
    fam = nn.remat(FeatureAggregation) if self.remat else FeatureAggregation
    fams = [fam(*row, conv=self.conv, name=str(i)) for i, row in enumerate(self.rows)]
    merges = [fams[0](features[0], features[1], flows[0])]
    for k in range(1, len(fams) - 1):
      merges.append(fams[k](merges[-1], features[k + 1], flows[k]))
    if last:
      merges.append(fams[-1](merges[-1]))
    return merges


class Score(nn.Module):
  """`score`: conv to one channel (1x1, or 3x3 in the joint model), resized to the input
  in float32 (the logits are float32 whatever the compute dtype)."""

  kernel_size: int = 1
  conv: ModuleDef = Conv2d

  @nn.compact
  def __call__(self, x, size):
    k = self.kernel_size
    conv = self.conv(1, k, padding=k // 2, use_bias=True, role="zero", name="score")
    return ops.resize_bilinear(conv(x).astype(jnp.float32), size)


class BlockLayer(nn.Module):
  """`block.i` of the edge branch: two bottleneck residuals, then 1x1 to 16 channels."""

  conv: ModuleDef = Conv2d

  @nn.compact
  def __call__(self, x):
    c, conv = x.shape[-1], self.conv
    for j in (1, 2):
      inner = ConvList([c // 4], 1, conv=conv, name=f"block_in{j}")([x])[0]
      mid = _Mid(c, conv, name=f"block_mid{j}")(inner)
      x = nn.relu(x + mid)
    return ConvList([EDGE_CHANNELS], 1, conv=conv, name="block_out")([x])[0]


class _Mid(nn.Module):
  """`block_midJ`: child '0' holds a 3x3 conv ('0') and a 1x1 conv ('1')."""

  features: int
  conv: ModuleDef = Conv2d

  @nn.compact
  def __call__(self, x):
    return _Mid3x1(self.features, self.conv, name="0")(x)


class _Mid3x1(nn.Module):
  features: int
  conv: ModuleDef = Conv2d

  @nn.compact
  def __call__(self, x):
    x = self.conv(x.shape[-1], 3, padding=1, name="0")(x)
    return self.conv(self.features, 1, name="1")(x)


class EdgeFuse(nn.Module):
  """`fuse`: per side output a biased 1x1 conv, resized; then a biased 1x1 over them.

  The side logits are resized and fused in float32 whatever the compute dtype.
  """

  conv: ModuleDef = Conv2d

  @nn.compact
  def __call__(self, edges, size):
    sides = ConvList([1] * len(edges), 1, use_bias=True, conv=self.conv, name="trans")(edges)
    sides = [ops.resize_bilinear(s.astype(jnp.float32), size) for s in sides]
    fuse = self.conv(1, 1, use_bias=True, dtype=jnp.float32, name="fuse")
    return fuse(jnp.concatenate(sides, axis=-1)), sides


class EdgeInfo(nn.Module):
  """`edgeinfo.trans`: four 3x3 conv + ReLU (children '0', '2', '4', '6')."""

  width: float = 1.0
  conv: ModuleDef = Conv2d

  @nn.compact
  def __call__(self, x):
    return _EdgeInfoTrans(self.width, self.conv, name="trans")(x)


class _EdgeInfoTrans(nn.Module):
  width: float = 1.0
  conv: ModuleDef = Conv2d

  @nn.compact
  def __call__(self, x):
    c = channels(EDGE_INFO_CHANNELS, self.width)
    for index, features in zip((0, 2, 4, 6), (x.shape[-1], c, c, c)):
      x = nn.relu(self.conv(features, 3, padding=1, name=str(index))(x))
    return x


class PoolNet(nn.Module):
  """PoolNet on a ResNet-50 or VGG-16 backbone, optionally with the joint edge branch.

  `__call__(images, mode="saliency")` takes preprocessed (N, H, W, 3) images and
  returns saliency logits (N, H, W, 1) in float32. Edge models also accept
  `mode="edge"`, returning (fused logits, [side-output logits]).

  `dtype` is the compute dtype of the convolutions and the decoder (parameters,
  the frozen BatchNorm's affine map and the final logits stay float32); `conv`
  how the convolutions are computed (layers.ConvImpl). Both are bound once into
  the Conv2d (and BatchNorm) every submodule receives as its `conv` (`norm`)
  field. `remat` recomputes the
  ResNet bottlenecks, VGG blocks and FAMs in the backward pass instead of
  keeping their activations.
  """

  backbone: str = "resnet50"
  edge: bool = False
  stages: Sequence[int] = (3, 4, 6, 3)
  width: float = 1.0
  resnet_style: str = "caffe"
  dtype: Any = jnp.float32
  conv: ConvImpl = XLA
  remat: bool = False

  def min_input_size(self) -> int:
    """Smallest height/width the network accepts: the coarsest map must fit an 8x8 pool."""
    size = 1
    while self._coarsest(size) < max(FAM_POOLS):
      size += 1
    return size

  def _coarsest(self, size):
    if self.backbone == "resnet50":
      return ResNet.feature_sizes(size, self.resnet_style)[-1]
    return VGG16.feature_sizes(size)[-1]

  @nn.compact
  def __call__(self, images, mode: str = "saliency"):
    if self.backbone not in DECODER:
      raise ValueError(f"unknown backbone {self.backbone!r}; expected one of {sorted(DECODER)}")
    if mode not in ("saliency", "edge") or (mode == "edge" and not self.edge):
      raise ValueError(f"mode {mode!r} is not available for this model")
    size = _size(images)
    smallest = self.min_input_size()
    if min(size) < smallest:
      raise ValueError(
        f"input {size[0]}x{size[1]} is too small for PoolNet-{self.backbone}: "
        f"the smallest accepted height and width is {smallest}"
      )
    w, conv = self.width, conv_def(self.dtype, self.conv)
    if self.backbone == "resnet50":
      norm = functools.partial(FrozenBatchNorm, dtype=self.dtype)
      backbone = functools.partial(
        ResNet, self.stages, w, self.resnet_style, conv, norm, self.remat
      )
    else:
      backbone = functools.partial(VGG16, w, conv, self.remat)
    spec = DECODER[self.backbone]
    features, flows = Base(self.backbone, backbone, w, conv, name="base")(images.astype(self.dtype))
    if spec["convert"]:
      convert = _Convert([channels(c, w) for c in spec["convert"]], conv, name="convert")
      features = convert(features)
    rows = [(channels(k, w), channels(k_out, w), x2, fuse) for k, k_out, x2, fuse in spec["fam"]]
    decoder = Decoder(rows, conv, self.remat, name="deep_pool")
    if not self.edge:
      merge = decoder(features[::-1], flows)[-1]
      return Score(1, conv, name="score")(merge, size)
    blocks = _Blocks(conv, name="block")
    outputs = None
    if mode == "edge" or self.is_initializing():
      edges = blocks(decoder(features[::-1], flows, last=False))
      outputs = EdgeFuse(conv, name="fuse")(edges, size)
    if mode == "saliency":
      merges = decoder(features[::-1], flows)
      merge = merges[-1]
      # The saliency loss does not train the edge branch (the original detaches it).
      edges = [jax.lax.stop_gradient(e) for e in blocks(merges[:-1])]
      edges = jnp.concatenate([ops.resize_bilinear(e, _size(merge)) for e in edges], axis=-1)
      info = EdgeInfo(w, conv, name="edgeinfo")(edges)
      outputs = Score(3, conv, name="score")(jnp.concatenate([merge, info], axis=-1), size)
    return outputs


class _Convert(nn.Module):
  """`convert.convert0`: per feature a 1x1 conv + ReLU (children '0'..'4', each conv '0')."""

  features: Sequence[int]
  conv: ModuleDef = Conv2d

  @nn.compact
  def __call__(self, features):
    return ConvList(self.features, 1, relu=True, conv=self.conv, name="convert0")(features)


class _Blocks(nn.Module):
  """`block`: one BlockLayer per intermediate merge, coarsest first."""

  conv: ModuleDef = Conv2d

  @nn.compact
  def __call__(self, merges):
    return [BlockLayer(self.conv, name=str(i))(m) for i, m in enumerate(merges)]
