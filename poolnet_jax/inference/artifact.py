"""The saliency function as a portable `jax.export` artifact (StableHLO with the weights).

    exported = export_saliency(model, variables, (300, 400), platforms=("cpu", "cuda"))
    Path("300x400.jax").write_bytes(exported.serialize())
    # elsewhere, with jax alone:
    exported = jax.export.deserialize(bytearray(Path("300x400.jax").read_bytes()))
    maps = exported.call(rgb_uint8)          # (N, 300, 400, 3) uint8 -> (N, 300, 400) float32

Inside: RGB -> BGR minus the mean (`image.preprocess`), the network, the sigmoid.
The batch is symbolic (any N); height and width are fixed per artifact. They
cannot be symbolic: adaptive average pooling and align-corners resizing are
built as numpy matrices from the concrete map sizes at trace time (`ops.py`),
and the network checks its minimum input size with a Python comparison. With
`symbolic_shape("b, h, w, 3")` export stops at that comparison with
"Symbolic dimension comparison 'w' < 'h' is inconclusive" (models/poolnet.py);
past it `ops.adaptive_avg_pool` fails with "'_DimExpr' object cannot be
interpreted as an integer" (`np.zeros((bins, in_size))`) and
`ops.resize_bilinear` with "Symbolic dimension '2*h' used in a context that
requires a constant". So `export_directory` writes one artifact per size.

The function is vmapped over single images, so each convolution is chosen as
for batch 1 (Winograd's cost model compares the batch with a constant, which a
symbolic batch cannot answer). Each platform gets its backend's default
convolutions (`layers.conv_impl(backend=...)`: Winograd and fused resizing on
CPU, XLA's convolutions on accelerators), through `lax.platform_dependent`
when the artifact holds both kinds.
"""

import json
import logging
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from poolnet_jax.imaging import image
from poolnet_jax.models import ModelSpec, variant_name
from poolnet_jax.models.layers import conv_impl

FORMATS = ("jax", "onnx")
PLATFORMS = ("cpu", "cuda", "tpu", "rocm")
DEFAULT_PLATFORMS = ("cpu", "cuda")
DEFAULT_SIZES = ((300, 400), (320, 320))
INDEX_FILE = "index.json"
SUFFIXES = {"jax": ".jax", "onnx": ".onnx"}
ONNX_INSTALL = (
  "pip install onnx onnx-ir onnxruntime && pip install --no-deps jax2onnx "
  "(jax2onnx 0.17's own requirements would downgrade orbax-checkpoint to < 0.11.37)"
)


class ExportError(ValueError):
  """An export that cannot be made as asked (size, platform, format)."""


class PlatformMismatch(ExportError):
  """An artifact called on a platform it was not exported for."""


def parse_sizes(text):
  """'300x400,320x320' -> ((300, 400), (320, 320))."""
  sizes = []
  for item in text.split(","):
    parts = item.strip().lower().split("x")
    if len(parts) != 2 or not all(p.isdigit() and int(p) > 0 for p in parts):
      raise ExportError(f"size {item.strip()!r} is not HEIGHTxWIDTH (e.g. 300x400)")
    sizes.append((int(parts[0]), int(parts[1])))
  if len(set(sizes)) != len(sizes):
    raise ExportError(f"sizes {text!r} name a size twice")
  return tuple(sizes)


def check_platforms(platforms):
  platforms = tuple(platforms)
  unknown = [p for p in platforms if p not in PLATFORMS]
  if unknown or not platforms or len(set(platforms)) != len(platforms):
    raise ExportError(
      f"platforms {','.join(platforms)!r}: expected distinct names among {', '.join(PLATFORMS)}"
    )
  return platforms


def saliency_function(model, variables):
  """One uint8 RGB image (H, W, 3) -> its saliency map (H, W) in [0, 1], float32."""

  def saliency(rgb):
    logits = model.apply(variables, image.preprocess(rgb[None]))
    return image.saliency_map(logits)[0, ..., 0]

  return saliency


def _per_platform(model, variables, platforms):
  """The batched function: one branch per convolution choice among `platforms`."""
  choices = {}
  for platform in platforms:
    choices.setdefault(conv_impl(backend=platform), []).append(platform)
  branches = {
    impl: jax.vmap(saliency_function(model.clone(conv=impl), variables)) for impl in choices
  }
  if len(branches) == 1:
    return next(iter(branches.values()))
  per_platform = {p: branches[impl] for impl, names in choices.items() for p in names}
  return lambda rgb: jax.lax.platform_dependent(rgb, **per_platform)


def _check_size(model, size):
  smallest = model.min_input_size()
  if min(size) < smallest:
    raise ExportError(
      f"size {size[0]}x{size[1]} is below the smallest input PoolNet-"
      f"{model.backbone} takes, {smallest}x{smallest}"
    )
  return size


def export_saliency(model, variables, size, platforms=DEFAULT_PLATFORMS):
  """`jax.export.Exported` of the saliency function for (N, H, W, 3) uint8, N symbolic."""
  platforms = check_platforms(platforms)
  height, width = _check_size(model, size)
  variables = jax.tree_util.tree_map(np.asarray, jax.device_get(variables))
  spec = jax.ShapeDtypeStruct(jax.export.symbolic_shape(f"b, {height}, {width}, 3"), jnp.uint8)
  function = jax.jit(_per_platform(model, variables, platforms))
  return jax.export.export(function, platforms=platforms)(spec)


def require_jax2onnx():
  """The jax2onnx module, or ExportError saying how to install it."""
  # Installed without its own requirements, jax2onnx warns about each plugin it skips.
  logging.getLogger("jax2onnx").setLevel(logging.ERROR)
  try:
    import jax2onnx  # pylint: disable=import-outside-toplevel
  except ImportError as error:
    raise ExportError(f"--format onnx needs jax2onnx ({error}): {ONNX_INSTALL}") from error
  return jax2onnx


def export_onnx(model, variables, size, batch=1):
  """ONNX ModelProto of the saliency function for (batch, H, W, 3) uint8, through jax2onnx.

  The batch is fixed: jax2onnx 0.17.1 cannot lower `lax.pad` with a symbolic
  dimension ("Symbolic dimension 'B' used in a context that requires a
  constant", jax2onnx/plugins/jax/lax/pad.py). Convolutions are XLA's (ONNX Conv).
  """
  jax2onnx = require_jax2onnx()
  _check_size(model, size)
  xla = model.clone(conv=conv_impl("xla"))
  variables = jax.tree_util.tree_map(np.asarray, jax.device_get(variables))

  def saliency(rgb):
    return image.saliency_map(xla.apply(variables, image.preprocess(rgb)))[..., 0]

  spec = jax.ShapeDtypeStruct((batch, *size, 3), jnp.uint8)
  return jax2onnx.to_onnx(
    saliency,
    [spec],
    model_name=f"poolnet_{variant_name(model)}",
    input_names=["rgb"],
    output_names=["saliency"],
  )


def onnx_difference(proto, model, variables, seed=0):
  """Largest |onnxruntime - JAX| over the maps of one random batch (None without onnxruntime)."""
  try:
    import onnxruntime  # pylint: disable=import-outside-toplevel
  except ImportError:
    return None
  shape = [d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
  rgb = np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)
  options = onnxruntime.SessionOptions()
  options.log_severity_level = 3  # no notes on unused initializers
  session = onnxruntime.InferenceSession(
    proto.SerializeToString(), options, providers=["CPUExecutionProvider"]
  )
  got = session.run(None, {"rgb": rgb})[0]
  want = jax.jit(jax.vmap(saliency_function(model, variables)))(rgb)
  return float(np.abs(got - np.asarray(want)).max())


def artifact_name(size, fmt="jax"):
  return f"{size[0]}x{size[1]}{SUFFIXES[fmt]}"


def export_directory(
  model,
  variables,
  out,
  sizes=DEFAULT_SIZES,
  platforms=DEFAULT_PLATFORMS,
  fmt="jax",
  batch=1,
  source=None,
):
  """Writes one artifact per size to `out` and `index.json` describing them; returns the index.

  `fmt` "jax" (jax.export, symbolic batch, `platforms`) or "onnx" (fixed `batch`,
  checked against onnxruntime where it is installed).
  """
  if fmt not in FORMATS:
    raise ExportError(f"format {fmt!r}: expected one of {', '.join(FORMATS)}")
  platforms = check_platforms(platforms)
  for size in sizes:
    _check_size(model, size)
  if fmt == "onnx":
    require_jax2onnx()
  out = Path(out)
  out.mkdir(parents=True, exist_ok=True)
  entries = []
  for size in sizes:
    start = time.perf_counter()
    entry = {"height": size[0], "width": size[1], "file": artifact_name(size, fmt)}
    if fmt == "jax":
      data = export_saliency(model, variables, size, platforms).serialize()
    else:
      proto = export_onnx(model, variables, size, batch)
      data = proto.SerializeToString()
      entry["onnxruntime_max_difference"] = onnx_difference(proto, model, variables)
    (out / entry["file"]).write_bytes(data)
    entries.append(
      {**entry, "bytes": len(data), "export_seconds": round(time.perf_counter() - start, 2)}
    )
  shape = "batch symbolic" if fmt == "jax" else f"batch {batch}"
  index = {
    "format": "jax.export" if fmt == "jax" else "onnx",
    "model": ModelSpec.of(model).to_json(),
    "source": None if source is None else str(source),
    "input": f"uint8 RGB (batch, height, width, 3), {shape}",
    "output": "float32 saliency map in [0, 1] (batch, height, width)",
    "platforms": list(platforms) if fmt == "jax" else None,
    "sizes": entries,
    "versions": {
      name: _version(name)
      for name in (
        ("jax", "jaxlib", "flax", "numpy") + (("jax2onnx", "onnx") if fmt == "onnx" else ())
      )
    },
  }
  (out / INDEX_FILE).write_text(json.dumps(index, indent=2) + "\n")
  return index


def _version(package):
  from importlib import metadata  # pylint: disable=import-outside-toplevel

  try:
    return metadata.version(package)
  except metadata.PackageNotFoundError:
    return None


class ExportedSaliency:
  """A deserialised artifact: `maps = artifact(rgb)` for uint8 (N, H, W, 3) -> (N, H, W)."""

  def __init__(self, path):
    self.path = Path(path)
    data = self.path.read_bytes()
    try:
      self.exported = jax.export.deserialize(bytearray(data))
    except Exception as error:  # flatbuffers raises its own internals on garbage
      raise ExportError(
        f"{self.path}: not a jax.export artifact ({type(error).__name__}: {error})"
      ) from error
    self.platforms = tuple(self.exported.platforms)
    self.size = tuple(int(n) for n in self.exported.in_avals[0].shape[1:3])

  def __call__(self, rgb):
    rgb = np.asarray(rgb)
    if rgb.ndim != 4 or rgb.shape[1:] != (*self.size, 3) or rgb.dtype != np.uint8:
      raise ExportError(
        f"{self.path} takes uint8 RGB images (N, {self.size[0]}, "
        f"{self.size[1]}, 3), got {rgb.dtype} {rgb.shape}"
      )
    here = jax.export.default_export_platform()  # "cuda", not the backend's "gpu"
    try:
      return self.exported.call(rgb)
    except ValueError as error:
      if "exported for platform" not in str(error):
        raise
      raise PlatformMismatch(
        f"{self.path} was exported for {', '.join(self.platforms)} only; JAX here runs on "
        f"{here}: export it again with --platforms including {here}"
      ) from error


def load_exported(path):
  """`ExportedSaliency` of an artifact file written by `export_directory`."""
  return ExportedSaliency(path)
