"""Starting point for training from scratch (the demo).

The original always starts from ImageNet backbones. From random weights its
N(0, 0.01) kernels and identity BatchNorms leave signals vanishing.
"""

import math

import jax

INPUT_STD = 60.0  # about the std of BGR-minus-mean pixels, which the original does not divide


def he_normal_kernels(params):
  """Rescales N(0, 0.01) conv kernels to He-normal N(0, 2 / fan_in), exactly in distribution.

  Kernels reading the RGB input are divided by INPUT_STD, so features start near unit scale.
  """
  def rescale(path, x):
    if path[-1].key != "kernel":
      return x
    fan_in = math.prod(x.shape[:-1])
    gain = 1.0 / INPUT_STD if x.shape[-2] == 3 else 1.0
    return x * (gain * math.sqrt(2.0 / fan_in) / 0.01)
  return jax.tree_util.tree_map_with_path(rescale, params)
