"""Which network a state dict is, told by its tensor names alone (shapes unchecked).

The authors' PoolNet files (`base.resnet.*` / `base.vgg16.base.*`, `deep_pool*`, `score*`;
the edge models' `edgeinfo*`, `fuse*`, `block*`) and the ImageNet backbone files they
start from (`conv1.*`, `layerN.*`; VGG's flat `N.weight` or torchvision's `features.N.*`).
The mapping (full PoolNets) and the backbone loader both ask this module; it asks neither.
"""

import re

from poolnet_jax.weights.torch_io.pth import strip_prefix

RESNET_KEY = re.compile(r"^(conv1|bn1|layer[1-4])\.")
VGG_KEY = re.compile(r"^(?:features\.)?(\d+)\.(weight|bias)$")
CLASSIFIER_KEY = re.compile(r"^(fc|classifier)\.")  # ImageNet heads, in no PoolNet
POOLNET_KEY = re.compile(r"^(base\.(resnet|vgg16)|deep_pool|score)\.")


def backbone_kind(state_dict):
  """ "resnet50" or "vgg16" if `state_dict` is an ImageNet backbone file, else None."""
  keys = [k for k in strip_prefix(state_dict) if not CLASSIFIER_KEY.match(k)]
  if keys and "conv1.weight" in keys and all(RESNET_KEY.match(k) for k in keys):
    return "resnet50"
  if keys and all(VGG_KEY.match(k) for k in keys):
    return "vgg16"
  return None


def is_poolnet(state_dict):
  """Whether any tensor name is a full PoolNet's (backbone under `base.`, pools, score)."""
  return any(POOLNET_KEY.match(k) for k in strip_prefix(state_dict))


def variant_by_names(state_dict):
  """The variant a PoolNet state_dict's module names point to (shapes and counts unchecked)."""
  keys = list(strip_prefix(state_dict))
  backbone = "resnet50" if any(k.startswith("base.resnet.") for k in keys) else "vgg16"
  edge = any(k.startswith(("edgeinfo.", "fuse.", "block.")) for k in keys)
  return backbone + ("_edge" if edge else "")
