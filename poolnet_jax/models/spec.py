"""What a PoolNet is, as one value: its variant and the options that shape its parameters
or its arithmetic, apart from how it is computed (`conv`, `init`, `remat`: create_model's
own arguments).

    spec = ModelSpec("resnet50", width=0.125, stages=(1, 1, 1, 1))
    model = create_model(spec)
    spec.to_json()          # the object poolnet.json, a safetensors header and an export
                            # index hold: {"variant": ..., "width": ..., ...}
    ModelSpec.from_json(o)  # that object, or the older {"variant": ..., "overrides": {...}}
"""

import dataclasses
from typing import Tuple

import jax.numpy as jnp

from poolnet_jax.models.resnet import STYLES as RESNET_STYLES

VARIANTS = {
  "resnet50": dict(backbone="resnet50", edge=False),
  "vgg16": dict(backbone="vgg16", edge=False),
  "resnet50_edge": dict(backbone="resnet50", edge=True),
  "vgg16_edge": dict(backbone="vgg16", edge=True),
}
DTYPES = ("float32", "bfloat16", "float16")


def compute_dtype(dtype):
  """jnp dtype of a name ("bfloat16") or dtype, refusing anything but DTYPES."""
  try:
    name = dtype if isinstance(dtype, str) else jnp.dtype(dtype).name
  except TypeError:
    name = repr(dtype)
  if name not in DTYPES:
    raise ValueError(f"unknown compute dtype {dtype!r}; expected one of {DTYPES}")
  return jnp.dtype(name)


@dataclasses.dataclass(frozen=True)
class ModelSpec:
  """A PoolNet variant and its options; hashable, comparable, JSON-able.

  `width` multiplies every channel count, `stages` are the ResNet blocks per stage
  (VGG-16 has none to set), `resnet_style` is "caffe" (the authors' backbone: stride in
  the first 1x1 convolution) or "torchvision", `dtype` the compute dtype (parameters stay
  float32). The defaults are the original network.
  """

  variant: str = "resnet50"
  width: float = 1.0
  stages: Tuple[int, ...] = (3, 4, 6, 3)
  resnet_style: str = "caffe"
  dtype: str = "float32"

  def __post_init__(self):
    problems = spec_problems(dataclasses.asdict(self))
    if problems:
      raise ValueError("; ".join(problems))
    object.__setattr__(self, "width", float(self.width))
    object.__setattr__(self, "stages", tuple(self.stages))
    object.__setattr__(self, "dtype", compute_dtype(self.dtype).name)

  @classmethod
  def create(cls, variant, **options):
    """The spec of `variant` with `options` (the old create_model overrides), unknown ones
    refused by name."""
    options = {k: v for k, v in options.items() if v is not None}
    problems = spec_problems({"variant": variant, **options})
    if problems:
      raise ValueError("; ".join(problems))
    return cls(variant, **options)

  @classmethod
  def from_json(cls, obj):
    """A spec from `to_json`'s object, or from the older {"variant", "overrides"} form."""
    if not isinstance(obj, dict) or "variant" not in obj:
      raise ValueError(f"not a PoolNet model spec (no variant): {obj!r}")
    if "overrides" in obj:  # poolnet.json, safetensors and export indexes of before the spec
      if not isinstance(obj["overrides"], dict):
        raise ValueError(f"a model spec's overrides are not an object: {obj['overrides']!r}")
      return cls.create(obj["variant"], **obj["overrides"])
    return cls.create(**obj)

  @classmethod
  def of(cls, model):
    """The spec of a PoolNet module (the inverse of create_model)."""
    variant = next(
      name
      for name, kind in VARIANTS.items()
      if kind == {"backbone": model.backbone, "edge": model.edge}
    )
    return cls(
      variant, model.width, tuple(model.stages), model.resnet_style, jnp.dtype(model.dtype).name
    )

  @property
  def backbone(self):
    return VARIANTS[self.variant]["backbone"]

  @property
  def edge(self):
    return VARIANTS[self.variant]["edge"]

  def options(self):
    """The options that differ from the original network's, as plain Python values."""
    default = ModelSpec(self.variant)
    return {k: getattr(self, k) for k in OPTIONS if getattr(self, k) != getattr(default, k)}

  def to_json(self):
    return {
      "variant": self.variant,
      **{k: getattr(self, k) for k in OPTIONS},
      "stages": list(self.stages),
    }

  def __str__(self):
    options = ", ".join(f"{k}={v}" for k, v in self.options().items())
    return f"{self.variant} ({options})" if options else self.variant


OPTIONS = ("width", "stages", "resnet_style", "dtype")


def spec_problems(fields):
  """What is wrong with a spec's `fields` (a dict, as a config or a file holds them), one
  line each, "key=value: why"; [] when ModelSpec(**fields) is a valid network."""
  problems = [
    f"{key}: not a model option (they are variant, {', '.join(OPTIONS)})"
    for key in sorted(set(fields) - {"variant", *OPTIONS})
  ]
  if "variant" not in fields:
    problems.append("variant: missing")
  checks = {
    "variant": (lambda v: v in VARIANTS, f"is not one of {', '.join(sorted(VARIANTS))}"),
    "width": (_positive_number, "must be a number > 0"),
    "stages": (_block_counts, "must be 4 block counts >= 1"),
    "resnet_style": (lambda v: v in RESNET_STYLES, f"is not one of {', '.join(RESNET_STYLES)}"),
    "dtype": (_dtype_name, f"is not one of {', '.join(DTYPES)}"),
  }
  for key, (valid, why) in checks.items():
    if key in fields and not valid(fields[key]):
      problems.append(f"{key}={fields[key]!r} {why}")
  return problems


def _positive_number(value):
  return isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0


def _block_counts(values):
  return (
    isinstance(values, (tuple, list))
    and len(values) == 4
    and all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in values)
  )


def _dtype_name(value):
  try:
    compute_dtype(value)
  except ValueError:
    return False
  return True


def as_spec(spec, **options):
  """A ModelSpec from a spec or a variant name, with `options` applied."""
  if isinstance(spec, ModelSpec):
    return dataclasses.replace(spec, **options) if options else spec
  return ModelSpec.create(spec, **options)
