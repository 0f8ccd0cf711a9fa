"""The four PoolNet variants."""

from poolnet_jax.models.poolnet import PoolNet

VARIANTS = {
    "resnet50": dict(backbone="resnet50", edge=False),
    "vgg16": dict(backbone="vgg16", edge=False),
    "resnet50_edge": dict(backbone="resnet50", edge=True),
    "vgg16_edge": dict(backbone="vgg16", edge=True),
}


def create_model(name: str, **overrides) -> PoolNet:
  """PoolNet variant `name` (resnet50, vgg16, resnet50_edge, vgg16_edge).

  Overrides: `dtype` (compute dtype, e.g. jnp.bfloat16; parameters stay float32),
  `width` (channel multiplier), `stages` (ResNet blocks per stage) and
  `resnet_style` ("caffe", the authors' backbone, or "torchvision").
  """
  if name not in VARIANTS:
    raise ValueError(f"unknown PoolNet variant {name!r}; expected one of {sorted(VARIANTS)}")
  return PoolNet(**{**VARIANTS[name], **overrides})


def variant_name(model: PoolNet) -> str:
  """The variant name of a PoolNet module (inverse of create_model's `name`)."""
  return next(name for name, spec in VARIANTS.items()
              if spec == {"backbone": model.backbone, "edge": model.edge})
