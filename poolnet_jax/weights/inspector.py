"""What a `.pth` checkpoint holds, read without torch: its tensors and the PoolNet it fits.

    report = inspect_checkpoint("final.pth")
    print(format_text(report))      # or json.dumps(report.as_dict())

The file goes through the converter's own reader (`torch_io.pth.read_state_dict`,
which refuses any pickle global a state_dict never needs, before it can run) and
its variant table (`torch_io.mapping`). Besides the four published variants at
full size, the widths and ResNet stage counts the file's shapes suggest are
tried, so a model trained with `width=0.125, stages=(1, 1, 1, 1)` is recognised.
"""

import dataclasses
import re
import numpy as np

from poolnet_jax.models import VARIANTS, ModelSpec
from poolnet_jax.weights.torch_io import mapping
from poolnet_jax.weights.torch_io.pth import read_state_dict, strip_prefix

SHOWN = mapping.SHOWN  # names listed per kind of difference in the text form
FIRST_CONV = {"resnet50": "base.resnet.conv1.weight", "vgg16": "base.vgg16.base.0.weight"}
_RESNET_BLOCK = re.compile(r"^base\.resnet\.layer([1-4])\.(\d+)\.")


@dataclasses.dataclass
class Tensor:
  name: str
  shape: tuple
  dtype: str


@dataclasses.dataclass
class Report:
  """One checkpoint: its tensors (file order) and the variant it matches or is nearest to."""

  path: str
  format: str  # "zip" (torch >= 1.6) or "legacy" (torch <= 1.5)
  tensors: list
  prefix: str  # "module." when nn.DataParallel's prefix was stripped for matching, else ""
  spec: ModelSpec  # the matching PoolNet, or the nearest one
  matches: bool
  missing: list = dataclasses.field(default_factory=list)
  unexpected: list = dataclasses.field(default_factory=list)
  mis_shaped: list = dataclasses.field(default_factory=list)

  @property
  def variant(self):
    return self.spec.variant

  @property
  def values(self):
    return sum(int(np.prod(t.shape)) for t in self.tensors)

  def as_dict(self):
    out = dataclasses.asdict(self)
    out["tensors"] = [
      {"name": t.name, "shape": list(t.shape), "dtype": t.dtype} for t in self.tensors
    ]
    out["variant"], out["model"], out["values"] = self.variant, self.spec.to_json(), self.values
    del out["spec"]
    return out


def file_format(path):
  """ "zip" or "legacy" from the first bytes (read_state_dict has checked the rest)."""
  with open(path, "rb") as file:
    return "zip" if file.read(4) == b"PK\x03\x04" else "legacy"


def inspect_checkpoint(path):
  """Report on the `.pth` file at `path`.

  Raises what `read_state_dict` raises: `UnsafePickleError` naming what the
  pickle asked for (nothing is run), `PthError` for a file that is no readable
  checkpoint, OSError for a missing one.
  """
  arrays = read_state_dict(path)
  tensors = [Tensor(k, tuple(int(n) for n in a.shape), _dtype_name(a)) for k, a in arrays.items()]
  stripped = strip_prefix(arrays)
  prefix = "module." if list(stripped) != list(arrays) else ""
  best = None
  for spec in candidates(stripped):
    expected = mapping.expected_state_dict(spec)
    missing, unexpected, mis_shaped = mapping.mismatch(stripped, expected)
    score = len(missing) + len(unexpected) + len(mis_shaped)
    if best is None or score < best[0]:
      best = (score, spec, missing, unexpected, mis_shaped)
  score, spec, missing, unexpected, mis_shaped = best
  return Report(
    str(path), file_format(path), tensors, prefix, spec, score == 0, missing, unexpected, mis_shaped
  )


def _dtype_name(array):
  return "int64" if array.dtype == np.int64 else array.dtype.name


def candidates(state_dict):
  """ModelSpecs to try: every variant at full size, then at the width and stages the file
  suggests (first convolution's outputs / 64, ResNet blocks per stage)."""
  rows = [ModelSpec(name) for name in VARIANTS]
  for name, kind in VARIANTS.items():
    first = state_dict.get(FIRST_CONV[kind["backbone"]])
    if first is None or np.ndim(first) != 4 or not first.shape[0]:
      continue
    options = {"width": first.shape[0] / 64}
    if kind["backbone"] == "resnet50":
      options["stages"] = _resnet_stages(state_dict) or (3, 4, 6, 3)
    spec = ModelSpec(name, **options)
    if spec not in rows:
      rows.append(spec)
  return rows


def _resnet_stages(state_dict):
  counts = [0, 0, 0, 0]
  for key in state_dict:
    match = _RESNET_BLOCK.match(key)
    if match:
      stage, block = int(match.group(1)) - 1, int(match.group(2))
      counts[stage] = max(counts[stage], block + 1)
  return tuple(counts) if all(counts) else None


def format_text(report, shown=SHOWN):
  """The report as lines of text: a summary, the differences, then every tensor."""
  lines = [
    f"{report.path}: {report.format} format, {len(report.tensors)} tensors, "
    f"{report.values:,} values"
  ]
  if report.prefix:
    lines.append(f"names carry nn.DataParallel's {report.prefix!r} prefix (ignored for matching)")
  if report.matches:
    lines.append(f"PoolNet variant: {report.spec} (every name and shape matches)")
  else:
    lines.append(f"no PoolNet variant matches; nearest: {report.spec}")
    for label, items in (
      ("missing", report.missing),
      ("unexpected", report.unexpected),
      ("wrong shape", report.mis_shaped),
    ):
      if items:
        more = f" (and {len(items) - shown} more)" if len(items) > shown else ""
        lines.append(f"  {len(items)} {label}: " + ", ".join(items[:shown]) + more)
  width = max((len(t.name) for t in report.tensors), default=0)
  lines += [f"  {t.name:<{width}}  {t.dtype:<8} {tuple(t.shape)}" for t in report.tensors]
  return "\n".join(lines)
