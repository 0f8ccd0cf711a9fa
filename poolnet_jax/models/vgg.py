"""PoolNet's VGG-16 backbone: 3x3 stride-2 max pools, features at strides 2-16."""

import flax.linen as nn

from poolnet_jax.imaging import ops
from poolnet_jax.models.layers import Conv2d, ModuleDef, channels

# The original's flat layer list: (index, out channels) of each 3x3 conv; a ReLU
# follows each conv and max pools sit at 4, 9, 16, 23 (and 30, never used).
CONVS = (
  (0, 64),
  (2, 64),
  (5, 128),
  (7, 128),
  (10, 256),
  (12, 256),
  (14, 256),
  (17, 512),
  (19, 512),
  (21, 512),
  (24, 512),
  (26, 512),
  (28, 512),
)
POOLS_AFTER = (2, 7, 14, 21)  # conv indices followed by a pool (4, 9, 16, 23)
FEATURES_AFTER = (7, 14, 21, 28)  # relu2_2, relu3_3, relu4_3, relu5_3 (8, 15, 22, 29)


class VGGLayers(nn.Module):
  """The flat layer list; conv i is child str(i) as in the original.

  With `remat` each block of convolutions between two pools keeps only its input
  for the backward pass (a lifted `nn.remat` of a function: names unchanged).
  """

  width: float = 1.0
  conv: ModuleDef = Conv2d
  remat: bool = False

  @nn.compact
  def __call__(self, x):
    features, block = [], []
    run = nn.remat(_conv_block, static_argnums=(2,)) if self.remat else _conv_block
    for index, c in CONVS:
      block.append((index, c))
      if index in FEATURES_AFTER or index in POOLS_AFTER:
        x = run(self, x, tuple(block))
        block = []
      if index in FEATURES_AFTER:
        features.append(x)
      if index in POOLS_AFTER:
        x = ops.max_pool(x, 3, 2, 1)
    return features


def _conv_block(layers, x, convs):
  """3x3 conv + ReLU for each (index, channels) of `convs`, as children of `layers`."""
  for index, c in convs:
    role = "input" if index == 0 else "hidden"
    conv = layers.conv(
      channels(c, layers.width), 3, padding=1, use_bias=True, role=role, name=str(index)
    )
    x = nn.relu(conv(x))
  return x


class VGG16(nn.Module):
  """Returns [relu2_2, relu3_3, relu4_3, relu5_3]; layers live under `base`."""

  width: float = 1.0
  conv: ModuleDef = Conv2d
  remat: bool = False

  @nn.compact
  def __call__(self, x):
    return VGGLayers(self.width, self.conv, self.remat, name="base")(x)

  @staticmethod
  def feature_channels(width: float = 1.0):
    return [channels(c, width) for c in (128, 256, 512, 512)]

  @staticmethod
  def feature_sizes(size: int):
    sizes = [size]
    for _ in range(4):
      sizes.append(ops.pool_output_size(sizes[-1], 3, 2, 1, ceil_mode=False))
    return sizes[1:]
