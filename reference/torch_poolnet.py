"""PyTorch (NCHW) reference of the four original PoolNet models, written from a description of
the original architecture, independently of the Flax model.

Not a test: the float64 reference of the parity tests and benchmarks, and the source
of random original-format checkpoints. `build(name)` returns a module whose
`state_dict()` names, order and shapes equal reference/state_dict_*.txt (the original's).

  plain models:  model(x) -> saliency logits (N, 1, H, W)
  edge models:   model(x, mode=1) -> saliency logits (N, 1, H, W)
                 model(x, mode=0) -> (fused, [side outputs]), block.0 first
"""

import torch
import torch.nn.functional as F
from torch import nn

torch.set_num_threads(2)

VARIANTS = ("resnet50", "vgg16", "resnet50_edge", "vgg16_edge")
RESNET_FEATURES = (64, 256, 512, 1024, 2048)
CONVERTED = (128, 256, 256, 512, 512)
# Decoder (deep_pool) rows: (k, k_out, need_x2, need_fuse); guiding-flow channels.
DEEP_POOL = {
  "resnet50": [
    (512, 512, False, True),
    (512, 256, True, True),
    (256, 256, True, True),
    (256, 128, True, True),
    (128, 128, False, False),
  ],
  "vgg16": [
    (512, 512, True, True),
    (512, 256, True, True),
    (256, 128, True, True),
    (128, 128, False, False),
  ],
}
INFOS = {"resnet50": (512, 256, 256, 128), "vgg16": (512, 256, 128)}
VGG_CONVS = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")
VGG_FEATURE_LAYERS = (8, 15, 22, 29)


def resize(x, size):
  """Bilinear resize with align_corners=True, the original's only resize."""
  return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=True)


def conv(cin, cout, k, bias=False, dilation=1, stride=1):
  """k x k convolution that keeps the size (1x1: no padding)."""
  return nn.Conv2d(
    cin, cout, k, stride=stride, padding=dilation * (k // 2), dilation=dilation, bias=bias
  )


class FrozenBatchNorm2d(nn.BatchNorm2d):
  """BatchNorm that always uses its running statistics (eps 1e-5), even in train()."""

  def forward(self, x):
    return F.batch_norm(
      x,
      self.running_mean,
      self.running_var,
      self.weight,
      self.bias,
      training=False,
      momentum=0.0,
      eps=self.eps,
    )


class Bottleneck(nn.Module):
  """Caffe-style bottleneck: the stride sits on the first 1x1 conv."""

  def __init__(self, cin, width, stride=1, dilation=1, project=False):
    super().__init__()
    self.conv1 = conv(cin, width, 1, stride=stride)
    self.bn1 = FrozenBatchNorm2d(width)
    self.conv2 = conv(width, width, 3, dilation=dilation)
    self.bn2 = FrozenBatchNorm2d(width)
    self.conv3 = conv(width, 4 * width, 1)
    self.bn3 = FrozenBatchNorm2d(4 * width)
    self.downsample = None
    if project:
      self.downsample = nn.Sequential(
        conv(cin, 4 * width, 1, stride=stride), FrozenBatchNorm2d(4 * width)
      )

  def forward(self, x):
    y = F.relu(self.bn1(self.conv1(x)))
    y = F.relu(self.bn2(self.conv2(y)))
    y = self.bn3(self.conv3(y))
    shortcut = x if self.downsample is None else self.downsample(x)
    return F.relu(y + shortcut)


class ResNet50(nn.Module):
  """Dilated ResNet-50 (output stride 16) -> [relu(conv1), layer1, ..., layer4]."""

  def __init__(self):
    super().__init__()
    self.conv1 = conv(3, 64, 7, stride=2)
    self.bn1 = FrozenBatchNorm2d(64)
    self.maxpool = nn.MaxPool2d(3, 2, 1, ceil_mode=True)
    cin = 64
    stages = [(3, 64, 1, 1), (4, 128, 2, 1), (6, 256, 2, 1), (3, 512, 1, 2)]
    for index, (blocks, width, stride, dilation) in enumerate(stages, start=1):
      layer = [Bottleneck(cin, width, stride, dilation, project=True)]
      layer += [Bottleneck(4 * width, width, 1, dilation) for _ in range(blocks - 1)]
      setattr(self, f"layer{index}", nn.Sequential(*layer))
      cin = 4 * width

  def forward(self, x):
    x = F.relu(self.bn1(self.conv1(x)))
    features = [x]
    x = self.maxpool(x)
    for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
      x = layer(x)
      features.append(x)
    return features


class VGG16(nn.Module):
  """PoolNet's VGG-16: 3x3 stride-2 pools; returns relu2_2, relu3_3, relu4_3, relu5_3."""

  def __init__(self):
    super().__init__()
    layers, cin = [], 3
    for index, item in enumerate(VGG_CONVS):
      if item == "M":
        last = index == len(VGG_CONVS) - 1
        layers.append(nn.MaxPool2d(3, 1 if last else 2, 1))
      else:
        layers += [conv(cin, item, 3, bias=True), nn.ReLU()]
        cin = item
    self.base = nn.ModuleList(layers)

  def forward(self, x):
    features = []
    for index, layer in enumerate(self.base):
      if index > VGG_FEATURE_LAYERS[-1]:
        break  # the last pool's output is never used
      x = layer(x)
      if index in VGG_FEATURE_LAYERS:
        features.append(x)
    return features


class GlobalGuidance(nn.Module):
  """Backbone + pyramid pooling + guiding flows (the state_dict's `base.`)."""

  def __init__(self, backbone):
    super().__init__()
    if backbone == "resnet50":
      self.resnet = ResNet50()
      self.ppms_pre = conv(2048, 512, 1)
    else:
      self.vgg16 = VGG16()
    self.ppms = nn.ModuleList(
      nn.Sequential(nn.AdaptiveAvgPool2d(n), conv(512, 512, 1), nn.ReLU()) for n in (1, 3, 5)
    )
    self.ppm_cat = nn.Sequential(conv(2048, 512, 3), nn.ReLU())
    self.infos = nn.ModuleList(nn.Sequential(conv(512, c, 3), nn.ReLU()) for c in INFOS[backbone])

  @property
  def backbone(self):
    return self.resnet if hasattr(self, "resnet") else self.vgg16

  def forward(self, x):
    features = self.backbone(x)
    top = features[-1]
    if hasattr(self, "ppms_pre"):
      top = self.ppms_pre(top)
    size = top.shape[2:]
    guidance = self.ppm_cat(torch.cat([top] + [resize(p(top), size) for p in self.ppms], 1))
    last = len(self.infos) - 1
    infos = [
      info(resize(guidance, features[last - k].shape[2:])) for k, info in enumerate(self.infos)
    ]
    return features, infos


class Convert(nn.Module):
  """ResNet only: 1x1 conv + ReLU per feature, to the decoder's channels."""

  def __init__(self):
    super().__init__()
    self.convert0 = nn.ModuleList(
      nn.Sequential(conv(cin, cout, 1), nn.ReLU()) for cin, cout in zip(RESNET_FEATURES, CONVERTED)
    )

  def forward(self, features):
    return [layer(f) for layer, f in zip(self.convert0, features)]


class DeepPool(nn.Module):
  """Feature aggregation module: multi-scale average pooling, then optional fusion."""

  def __init__(self, k, k_out, need_x2, need_fuse):
    super().__init__()
    self.need_x2, self.need_fuse = need_x2, need_fuse
    self.pools = nn.ModuleList(nn.AvgPool2d(p, stride=p) for p in (2, 4, 8))
    self.convs = nn.ModuleList(conv(k, k, 3) for _ in self.pools)
    self.conv_sum = conv(k, k_out, 3)
    if need_fuse:
      self.conv_sum_c = conv(k_out, k_out, 3)

  def forward(self, x, x2=None, x3=None):
    size = x.shape[2:]
    r = x
    for pool, branch in zip(self.pools, self.convs):
      r = r + resize(branch(pool(x)), size)
    r = F.relu(r)
    if self.need_x2:
      r = resize(r, x2.shape[2:])
    r = self.conv_sum(r)
    if self.need_fuse:
      r = self.conv_sum_c(r + x2 + x3)
    return r


class BlockLayer(nn.Module):
  """Edge branch: two residual bottlenecks (c -> c/4 -> c), then 1x1 to 16 channels."""

  def __init__(self, c):
    super().__init__()
    m = c // 4
    self.block_in1 = nn.Sequential(conv(c, m, 1))
    self.block_in2 = nn.Sequential(conv(c, m, 1))
    self.block_mid1 = nn.Sequential(nn.Sequential(conv(m, m, 3), conv(m, c, 1)))
    self.block_mid2 = nn.Sequential(nn.Sequential(conv(m, m, 3), conv(m, c, 1)))
    self.block_out = nn.Sequential(conv(c, 16, 1))

  def forward(self, x):
    x = F.relu(x + self.block_mid1(self.block_in1(x)))
    x = F.relu(x + self.block_mid2(self.block_in2(x)))
    return self.block_out(x)


class EdgeFuse(nn.Module):
  """Edge outputs: 1x1 (16 -> 1) per side, resized to the input, 1x1 fusion."""

  def __init__(self, n):
    super().__init__()
    self.trans = nn.ModuleList(conv(16, 1, 1, bias=True) for _ in range(n))
    self.fuse = conv(n, 1, 1, bias=True)

  def forward(self, edges, size):
    sides = [resize(trans(e), size) for trans, e in zip(self.trans, edges)]
    return self.fuse(torch.cat(sides, 1)), sides


class EdgeInfo(nn.Module):
  """Saliency mode: four 3x3 convs + ReLU on the concatenated edge features."""

  def __init__(self, c):
    super().__init__()
    channels = (c, c, 128, 128, 128)
    layers = []
    for cin, cout in zip(channels[:-1], channels[1:]):
      layers += [conv(cin, cout, 3), nn.ReLU()]
    self.trans = nn.Sequential(*layers)

  def forward(self, x):
    return self.trans(x)


class Score(nn.Module):
  def __init__(self, cin, k):
    super().__init__()
    self.score = conv(cin, 1, k, bias=True)

  def forward(self, x, size):
    return resize(self.score(x), size)


class PoolNet(nn.Module):
  """One of the four original models; submodules registered in state_dict order."""

  def __init__(self, name):
    super().__init__()
    if name not in VARIANTS:
      raise ValueError(f"torch_poolnet.py: unknown variant {name!r}, expected one of {VARIANTS}")
    self.name = name
    self.backbone = name.split("_")[0]
    self.edge = name.endswith("_edge")
    rows = DEEP_POOL[self.backbone]
    self.base = GlobalGuidance(self.backbone)
    if self.edge:
      self.block = nn.ModuleList(BlockLayer(row[1]) for row in rows[:-1])
    self.deep_pool = nn.ModuleList(DeepPool(*row) for row in rows)
    if self.edge:
      self.fuse = EdgeFuse(len(rows) - 1)
      self.edgeinfo = EdgeInfo(16 * (len(rows) - 1))
      self.score = Score(256, 3)
    else:
      self.score = Score(128, 1)
    if self.backbone == "resnet50":
      self.convert = Convert()

  def decode(self, x):
    """Backbone, guidance and all but the last aggregation: the list of merges."""
    features, infos = self.base(x)
    if hasattr(self, "convert"):
      features = self.convert(features)
    features = features[::-1]
    merges = [self.deep_pool[0](features[0], features[1], infos[0])]
    for k in range(1, len(features) - 1):
      merges.append(self.deep_pool[k](merges[-1], features[k + 1], infos[k]))
    return merges

  def forward(self, x, mode=1):
    if mode not in ((0, 1) if self.edge else (1,)):
      raise ValueError(
        f"torch_poolnet.py: {self.name} has no mode {mode} (0: edge, edge models only; 1: saliency)"
      )
    size = x.shape[2:]
    merges = self.decode(x)
    if mode == 0:
      return self.fuse([block(m) for block, m in zip(self.block, merges)], size)
    merge = self.deep_pool[-1](merges[-1])
    if self.edge:
      edges = [block(m).detach() for block, m in zip(self.block, merges)]
      info = self.edgeinfo(torch.cat([resize(e, merge.shape[2:]) for e in edges], 1))
      merge = torch.cat([merge, info], 1)
    return self.score(merge, size)


def build(name):
  """`resnet50`, `vgg16`, `resnet50_edge` or `vgg16_edge`, in eval mode."""
  return PoolNet(name).eval()


def backbone_feature_sizes(model, x):
  """(H, W) of each backbone feature for input x, running the backbone only."""
  with torch.no_grad():
    return [tuple(f.shape[2:]) for f in model.base.backbone(x)]


def parameter_count(model):
  """Trainable-shaped parameters: everything but BN running statistics and counters."""
  return sum(p.numel() for p in model.parameters())


# Conv-weight gain per variant, so that every output has an RMS of ~1..10 for inputs
# N(0, 50^2) (BGR minus mean scale). Measured with seed sum(map(ord, name)) at 128x160,
# 301x397 and 320x320 (saliency; edge: fused, sides):
#   resnet50 0.6: 3.8-3.9           vgg16 0.6: 5.8
#   resnet50_edge 0.55: 1.9-2.0; 1.5-1.6, 1.3-9.8   vgg16_edge 0.8: 2.6-2.9; 1.0, 1.5-4.1
# For comparison, gain 0.75 gives 11-20 (ResNet) and 15 (VGG), gain 0.5 gives 0.04-6.7.
DEFAULT_GAINS = {"resnet50": 0.6, "vgg16": 0.6, "resnet50_edge": 0.55, "vgg16_edge": 0.8}


def randomize_(model, gain=None, seed=0):
  """Deterministic random weights keeping logits of order 1..10 (as the parity tests need).

  Conv weights N(0, gain / fan_in), conv biases N(0, 0.1^2); BN running_mean and bias
  N(0, 0.1^2), running_var and weight U(0.5, 1.5), num_batches_tracked a random int.
  Values are drawn in float32 from one generator seeded by `seed`, module by module in
  registration order, so a float64 copy of the model holds exactly the same numbers.
  """
  gain = DEFAULT_GAINS[model.name] if gain is None else gain
  generator = torch.Generator().manual_seed(seed)

  def normal(t, std):
    return torch.randn(t.shape, generator=generator, dtype=torch.float32) * std

  def uniform(t, low, high):
    return low + (high - low) * torch.rand(t.shape, generator=generator, dtype=torch.float32)

  with torch.no_grad():
    for module in model.modules():
      if isinstance(module, nn.Conv2d):
        fan_in = module.weight[0].numel()
        module.weight.copy_(normal(module.weight, (gain / fan_in) ** 0.5))
        if module.bias is not None:
          module.bias.copy_(normal(module.bias, 0.1))
      elif isinstance(module, nn.BatchNorm2d):
        module.running_mean.copy_(normal(module.running_mean, 0.1))
        module.running_var.copy_(uniform(module.running_var, 0.5, 1.5))
        module.weight.copy_(uniform(module.weight, 0.5, 1.5))
        module.bias.copy_(normal(module.bias, 0.1))
        module.num_batches_tracked.fill_(int(torch.randint(0, 100_000, (), generator=generator)))
  return model


def scale_logits_(model, factor):
  """Scale every output (saliency logits, edge fused and side outputs) by factor."""
  layers = [model.score.score] + (list(model.fuse.trans) if model.edge else [])
  with torch.no_grad():
    for layer in layers:
      layer.weight.mul_(factor)
      layer.bias.mul_(factor)
    if model.edge:
      model.fuse.fuse.bias.mul_(factor)  # fused = w . (factor * sides) + factor * b
  return model
