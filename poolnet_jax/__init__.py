"""PoolNet salient object detection in JAX/Flax.

model, variables = poolnet_jax.load_pretrained("converted/")  # or "final.pth"
logits = model.apply(variables, poolnet_jax.preprocess(rgb[None]))
saliency = poolnet_jax.saliency_map(logits)

model = poolnet_jax.create_model(poolnet_jax.ModelSpec("vgg16", dtype="bfloat16"))
"""

import importlib

from poolnet_jax.imaging.image import preprocess, saliency_map
from poolnet_jax.inference.artifact import export_saliency, load_exported
from poolnet_jax.models import VARIANTS, ModelSpec, create_model
from poolnet_jax.weights.pretrained import (
  load_pretrained,
  load_torch_checkpoint,
  save_pretrained,
  save_torch_checkpoint,
)

__all__ = [
  "VARIANTS",
  "ModelSpec",
  "create_model",
  "preprocess",
  "saliency_map",
  "load_pretrained",
  "load_torch_checkpoint",
  "save_pretrained",
  "save_torch_checkpoint",
  "export_saliency",
  "load_exported",
  "to_nnx",
  "create_nnx",
  "load_nnx",
]

_LAZY = {
  "to_nnx": "poolnet_jax.weights.nnx_bridge",
  "create_nnx": "poolnet_jax.weights.nnx_bridge",
  "load_nnx": "poolnet_jax.weights.nnx_bridge",
}  # flax.nnx only when asked for


def __getattr__(name):
  if name in _LAZY:
    return getattr(importlib.import_module(_LAZY[name]), name)
  raise AttributeError(f"module 'poolnet_jax' has no attribute {name!r}")
