"""The table between the original's tensor names and Flax variable paths.

The Flax modules carry the original's module names, so a tensor name maps to a
path by splitting it on dots and renaming its last part by the rules below.
The original's state_dict order is recovered by ranking each name's parts with
the order in which the original registers its modules (`REGISTRATION_ORDER`).
"""

import numpy as np

# (torch leaf name, ndim) -> (Flax collection, Flax leaf name)
TORCH_TO_FLAX_LEAF = {
  ("weight", 4): ("params", "kernel"),
  ("weight", 1): ("params", "scale"),
  ("bias", 1): ("params", "bias"),
  ("running_mean", 1): ("batch_stats", "mean"),
  ("running_var", 1): ("batch_stats", "var"),
  ("num_batches_tracked", 0): ("batch_stats", "num_batches_tracked"),
}
FLAX_TO_TORCH_LEAF = {flax: torch for (torch, _), flax in TORCH_TO_FLAX_LEAF.items()}

# Every module and tensor name of the original in one sequence that, within any
# parent, lists its children in the order the original registers them.
REGISTRATION_ORDER = {
  name: rank
  for rank, name in enumerate(
    (
      "base",
      "resnet",
      "vgg16",
      "conv1",
      "bn1",
      "conv2",
      "bn2",
      "conv3",
      "bn3",
      "downsample",
      "layer1",
      "layer2",
      "layer3",
      "layer4",
      "ppms_pre",
      "ppms",
      "ppm_cat",
      "infos",
      "block",
      "block_in1",
      "block_in2",
      "block_mid1",
      "block_mid2",
      "block_out",
      "deep_pool",
      "convs",
      "conv_sum",
      "conv_sum_c",
      "trans",
      "fuse",
      "edgeinfo",
      "score",
      "convert",
      "convert0",
      "weight",
      "bias",
      "running_mean",
      "running_var",
      "num_batches_tracked",
    )
  )
}


def torch_to_flax(name: str, ndim: int):
  """'base.resnet.bn1.weight', 1 -> ('params', 'base', 'resnet', 'bn1', 'scale')."""
  *modules, leaf = name.split(".")
  if (leaf, ndim) not in TORCH_TO_FLAX_LEAF:
    raise KeyError(f"no Flax counterpart for tensor {name!r} with {ndim} dimensions")
  collection, flax_leaf = TORCH_TO_FLAX_LEAF[(leaf, ndim)]
  return (collection, *modules, flax_leaf)


def flax_to_torch(path) -> str:
  """('params', 'base', 'resnet', 'bn1', 'scale') -> 'base.resnet.bn1.weight'."""
  collection, *modules, leaf = path
  return ".".join([*modules, FLAX_TO_TORCH_LEAF[(collection, leaf)]])


def torch_to_flax_array(name: str, array: np.ndarray) -> np.ndarray:
  """OIHW conv weights -> HWIO kernels; everything else unchanged."""
  del name
  return np.transpose(array, (2, 3, 1, 0)) if array.ndim == 4 else array


def flax_to_torch_array(path, array: np.ndarray) -> np.ndarray:
  """HWIO kernels -> OIHW conv weights; everything else unchanged."""
  del path
  return np.transpose(array, (3, 2, 0, 1)) if array.ndim == 4 else array


def state_dict_order(name: str):
  """Sort key giving the original state_dict order."""
  return tuple(
    (0, int(part)) if part.isdigit() else (1, REGISTRATION_ORDER[part]) for part in name.split(".")
  )
