"""The four PoolNet variants."""

import dataclasses

import jax.numpy as jnp

from poolnet_jax.models import init as init_schemes
from poolnet_jax.models.layers import ConvImpl, conv_impl
from poolnet_jax.models.poolnet import PoolNet

DTYPES = ("float32", "bfloat16", "float16")

VARIANTS = {
  "resnet50": dict(backbone="resnet50", edge=False),
  "vgg16": dict(backbone="vgg16", edge=False),
  "resnet50_edge": dict(backbone="resnet50", edge=True),
  "vgg16_edge": dict(backbone="vgg16", edge=True),
}


def create_model(name: str, *, conv=None, resize_conv=None, init=None, **overrides) -> PoolNet:
  """PoolNet variant `name` (resnet50, vgg16, resnet50_edge, vgg16_edge).

  Overrides: `dtype` (compute dtype, a name or jnp dtype, e.g. "bfloat16";
  parameters stay float32), `width` (channel multiplier), `stages` (ResNet blocks
  per stage), `resnet_style` ("caffe", the authors' backbone, or "torchvision")
  and `remat` (recompute blocks in the backward pass). `conv` ("fast", "xla", a
  layers.ConvImpl, or None: the default backend's choice) and `resize_conv`
  (None: as `conv`) say how convolutions are computed; the parameters and the
  results (to float rounding) are the same either way. `init` ("original", the
  default, or "skipinit": models/init.py) is how `model.init` draws the kernels.
  """
  if name not in VARIANTS:
    raise ValueError(f"unknown PoolNet variant {name!r}; expected one of {sorted(VARIANTS)}")
  if "dtype" in overrides:
    overrides["dtype"] = compute_dtype(overrides["dtype"])
  if "stages" in overrides:
    overrides["stages"] = tuple(overrides["stages"])
  impl = conv if isinstance(conv, ConvImpl) else conv_impl(conv)
  if resize_conv is not None:
    impl = dataclasses.replace(impl, resize_conv=bool(resize_conv))
  if init:
    if init not in init_schemes.SCHEMES:
      raise ValueError(f"unknown initialisation {init!r}; expected one of {init_schemes.SCHEMES}")
    impl = dataclasses.replace(impl, init=init)
  return PoolNet(**{**VARIANTS[name], **overrides}, conv=impl)


def compute_dtype(dtype):
  """jnp dtype of a name ("bfloat16") or dtype, refusing anything but DTYPES."""
  name = jnp.dtype(dtype).name if not isinstance(dtype, str) else dtype
  if name not in DTYPES:
    raise ValueError(f"unknown compute dtype {dtype!r}; expected one of {DTYPES}")
  return jnp.dtype(name)


def variant_name(model: PoolNet) -> str:
  """The variant name of a PoolNet module (inverse of create_model's `name`)."""
  return next(
    name
    for name, spec in VARIANTS.items()
    if spec == {"backbone": model.backbone, "edge": model.edge}
  )
