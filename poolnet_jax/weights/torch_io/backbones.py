"""ImageNet backbone files for initialising training: the authors' and torchvision's.

- ResNet-50: `resnet50_caffe.pth` (keys `conv1.*`, `bn1.*`, `layerN.*`) or
  torchvision's `resnet50` state_dict (same keys; use the model option
  `resnet_style="torchvision"` with it). Extra keys such as `fc.*` are ignored.
- VGG-16: `vgg16_20M.pth` (flat layer-list keys `0.weight`, `2.weight`, ...) or
  torchvision's `vgg16` (`features.N.*`). Extra keys are ignored.

Files saved before PyTorch 0.4.1 have no BatchNorm counters (`num_batches_tracked`);
they are filled in as 0. A full PoolNet file is refused with the config key it belongs to.
"""

import logging
import os

import flax
import numpy as np

from poolnet_jax.weights.torch_io import mapping, variants
from poolnet_jax.weights.torch_io.pth import read_state_dict, strip_prefix

PREFIX = {"resnet50": "base.resnet.", "vgg16": "base.vgg16.base."}
RESNET_KEY, VGG_KEY = variants.RESNET_KEY, variants.VGG_KEY


def _rename(state_dict, backbone):
  """Backbone keys -> {PoolNet name: (file key, tensor)}, plus the ignored file keys."""
  renamed, ignored = {}, []
  for key, value in state_dict.items():
    if backbone == "resnet50" and RESNET_KEY.match(key):
      renamed[PREFIX[backbone] + key] = (key, value)
    elif backbone == "vgg16" and VGG_KEY.match(key):
      index, leaf = VGG_KEY.match(key).groups()
      renamed[f"{PREFIX[backbone]}{index}.{leaf}"] = (key, value)
    else:
      ignored.append(key)
  return renamed, ignored


def load_backbone(path, backbone, **overrides):
  """Reads a backbone file -> Flax variables of the backbone only (to merge).

  `backbone` is "resnet50" or "vgg16"; `overrides` are the model's create_model
  overrides (they must keep the backbone's shapes). Tensors the backbone does
  not have are ignored and reported; missing or mis-shaped ones are an error.
  """
  if backbone not in PREFIX:
    raise ValueError(f"unknown backbone {backbone!r}; expected one of {sorted(PREFIX)}")
  if os.path.isdir(path):
    raise mapping.CheckpointMismatch(
      f"{path} is a folder (a converted PoolNet?), not an ImageNet backbone file; "
      f"use --config.init_checkpoint={path} to fine-tune a converted or trained PoolNet"
    )
  state_dict = strip_prefix(read_state_dict(path))
  if variants.is_poolnet(state_dict):
    raise mapping.CheckpointMismatch(
      f"{path} is a full PoolNet checkpoint ({variants.variant_by_names(state_dict)}), not an "
      f"ImageNet backbone; use --config.init_checkpoint={path} to fine-tune it"
    )
  renamed, ignored = _rename(state_dict, backbone)
  expected = {
    k: v
    for k, v in mapping.expected_state_dict(backbone, **overrides).items()
    if k.startswith(PREFIX[backbone])
  }
  if backbone == "vgg16":  # layers past relu5_3 (fc6/fc7 as convs) are not in PoolNet
    ignored += [file_key for k, (file_key, _) in renamed.items() if k not in expected]
    renamed = {k: v for k, v in renamed.items() if k in expected}
  renamed = {k: value for k, (_, value) in renamed.items()}
  # Files from before PyTorch 0.4.1 have no BatchNorm counters: default them to 0.
  for key in expected:
    if key.endswith("num_batches_tracked") and key not in renamed:
      renamed[key] = np.zeros((), np.int64)
  missing, unexpected, shapes = mapping.mismatch(renamed, expected)
  if missing or unexpected or shapes:
    raise mapping.CheckpointMismatch(
      f"{path} is not a {backbone} backbone file:"
      + mapping.describe("missing tensors", missing)
      + mapping.describe("unexpected tensors", unexpected)
      + mapping.describe("shape mismatches", shapes)
    )
  if ignored:
    logging.info(
      "%s: ignored %d tensors the %s backbone does not use: %s%s",
      path,
      len(ignored),
      backbone,
      ", ".join(ignored[:5]),
      " ..." if len(ignored) > 5 else "",
    )
  return mapping.unflatten(renamed), ignored


def merge_backbone(variables, backbone_variables):
  """`variables` with every backbone tensor replaced; shapes must agree."""
  flat = flax.traverse_util.flatten_dict(variables)
  for path, value in flax.traverse_util.flatten_dict(backbone_variables).items():
    if path not in flat or tuple(flat[path].shape) != tuple(value.shape):
      raise mapping.CheckpointMismatch(f"backbone tensor {'/'.join(path)} does not fit the model")
    flat[path] = value
  return flax.traverse_util.unflatten_dict(flat)
