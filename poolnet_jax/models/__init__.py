"""The four PoolNet variants, made from a ModelSpec (models/spec.py) or a variant name."""

import dataclasses

from poolnet_jax.models import init as init_schemes
from poolnet_jax.models.layers import ConvImpl, conv_impl
from poolnet_jax.models.poolnet import PoolNet
from poolnet_jax.models.spec import (
  DTYPES,
  OPTIONS,
  VARIANTS,
  ModelSpec,
  as_spec,
  compute_dtype,
  spec_problems,
)

__all__ = [
  "DTYPES",
  "OPTIONS",
  "VARIANTS",
  "ModelSpec",
  "as_spec",
  "compute_dtype",
  "create_model",
  "spec_problems",
  "variant_name",
]


def create_model(
  spec, *, conv=None, resize_conv=None, init=None, remat=False, **options
) -> PoolNet:
  """The PoolNet of `spec`: a ModelSpec, or a variant name (resnet50, vgg16, resnet50_edge,
  vgg16_edge) with its options (`width`, `stages`, `resnet_style`, `dtype`: ModelSpec).

  How it is computed, which changes neither its parameters nor (to float rounding) its
  results: `conv` ("fast", "xla", a layers.ConvImpl, or None: the default backend's
  choice), `resize_conv` (None: as `conv`), `init` ("original", the default, or
  "skipinit": models/init.py; how `model.init` draws the kernels) and `remat` (recompute
  blocks in the backward pass).
  """
  spec = as_spec(spec, **options)
  impl = conv if isinstance(conv, ConvImpl) else conv_impl(conv)
  if resize_conv is not None:
    impl = dataclasses.replace(impl, resize_conv=bool(resize_conv))
  if init:
    if init not in init_schemes.SCHEMES:
      raise ValueError(f"unknown initialisation {init!r}; expected one of {init_schemes.SCHEMES}")
    impl = dataclasses.replace(impl, init=init)
  return PoolNet(
    backbone=spec.backbone,
    edge=spec.edge,
    stages=spec.stages,
    width=spec.width,
    resnet_style=spec.resnet_style,
    dtype=compute_dtype(spec.dtype),
    conv=impl,
    remat=bool(remat),
  )


def variant_name(model: PoolNet) -> str:
  """The variant name of a PoolNet module (ModelSpec.of(model).variant)."""
  return ModelSpec.of(model).variant
