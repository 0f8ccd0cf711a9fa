"""The paper's table for the authors' ResNet-50 checkpoints: max F, MAE and S-measure per test
set beside the published numbers (Liu et al., CVPR 2019), with each set's image count checked.

    model, variables, note = load_model("final.pth", "resnet50_edge")  # torch-free converter
    checks = check_sets({"ecssd": "ecssd", "duts_te": "duts_te"}, data_dir, manual_dir)
    problems = count_problems(checks)      # [] when every set holds the authors' images
    rows = score({"resnet50_edge": (model, variables)}, checks)
    print(format_table(rows))

The published numbers are only those the project's notes on the original record (max F / MAE
of ResNet-50 + edge, the paper's table as a results aggregator lists it, measured by the
authors with their SalMetric evaluator); the model without edge and the S-measure have
none there, so their paper columns stay empty. Scoring is
`predictor_lib.evaluate_model`'s (pysodmetrics by default, each map at its image's, hence its
mask's, size; `protocol="salmetric"` for the authors' rules), exactly the evaluate command's.
"""

import csv
import dataclasses
import io
import json
import os
from pathlib import Path
from typing import Optional

from poolnet_jax.errors import UserError
from poolnet_jax.inference import predictor as predictor_lib
from poolnet_jax.models import create_model, variant_name
from poolnet_jax.weights import inspector
from poolnet_jax.weights import pretrained
from poolnet_jax.weights import safetensors_io
from poolnet_jax.weights.torch_io import mapping
from poolnet_jax.weights.torch_io.pth import read_state_dict, strip_prefix


@dataclasses.dataclass(frozen=True)
class PaperSet:
  title: str  # as the paper's table names it
  expected: int  # images in the authors' test list
  also_complete: tuple = ()  # other counts that hold the authors' list (DUT-O's whole set)
  hint: str = ""  # what to do when the count differs


SETS = {  # key (also the default TFDS spec) -> the set
  "ecssd": PaperSet("ECSSD", 1000),
  "pascal_s": PaperSet("PASCAL-S", 850),
  "dut_omron": PaperSet(
    "DUT-O", 5166, (5168,), "the whole set has 5168 images, the authors' list 5166"
  ),
  "hku_is": PaperSet(
    "HKU-IS",
    1447,
    (),
    "the authors scored HKU-IS's 1447-image test list: put it beside the images as test.lst "
    "and build the set anew (without it all 4447 images are built)",
  ),
  "sod": PaperSet("SOD", 300),
  "duts_te": PaperSet("DUTS-TE", 5019),
}
MODELS = {"resnet50": "without edge", "resnet50_edge": "with edge"}
FULL_SIZE = dict(width=1.0, stages=(3, 4, 6, 3))
MEASURES = ("maxF", "MAE", "Sm")
# (variant, set) -> published measures, as the project's notes on the original record them.
PAPER = {
  ("resnet50_edge", "ecssd"): {"maxF": 0.945, "MAE": 0.038},
  ("resnet50_edge", "pascal_s"): {"maxF": 0.880, "MAE": 0.065},
  ("resnet50_edge", "dut_omron"): {"maxF": 0.833, "MAE": 0.053},
  ("resnet50_edge", "hku_is"): {"maxF": 0.935, "MAE": 0.030},
  ("resnet50_edge", "sod"): {"maxF": 0.882, "MAE": 0.102},
  ("resnet50_edge", "duts_te"): {"maxF": 0.892, "MAE": 0.036},
}
PAPER_NOTE = (
  "paper: Liu et al., CVPR 2019, ResNet-50 + edge, max F / MAE by the authors' SalMetric "
  "(as a results aggregator lists them); none on record for the model without edge or for the "
  "S-measure"
)


def parse_sets(entries):
  """['ecssd', 'duts_te=duts:test'] -> {"ecssd": "ecssd", "duts_te": "duts:test"}: each paper
  set with the TFDS spec that holds it (default: its own name)."""
  sets = {}
  for entry in entries:
    key, _, spec = entry.strip().partition("=")
    key = key.strip().lower().replace("-", "_")
    if key not in SETS:
      raise UserError(f"{entry}: not a set of the paper's table; expected one of {', '.join(SETS)}")
    if key in sets:
      raise UserError(f"{key} is given twice")
    sets[key] = spec.strip() or key
  if not sets:
    raise UserError("no dataset given")
  return sets


def load_model(path, variant):
  """(model, variables, note) of a checkpoint that must be PoolNet `variant`.

  A `.pth` goes through the torch-free converter (`torch_io.pth`, `torch_io.mapping`); a
  converted or trained directory or a `.safetensors` file through `load_pretrained`. A model
  smaller than the authors' (another width or stage count, which `inspect` recognises) loads
  with a note saying its numbers are not the paper's; note is None for the full size.
  """
  path = Path(path)
  if path.is_file() and not safetensors_io.looks_like_safetensors(path):
    state_dict = strip_prefix(read_state_dict(path))
    spec = _reduced(state_dict)
    if spec is None:
      name, variables = mapping.to_flax(state_dict, source=str(path))  # or why not
      model = create_model(name)
    else:
      model, variables = create_model(spec), mapping.unflatten(state_dict)
  else:
    model, variables = pretrained.load_pretrained(path)
  found = variant_name(model)
  if found != variant:
    raise UserError(
      f"{path} holds PoolNet {found}, not {variant} ({MODELS.get(variant, variant)}): the paper "
      f"table takes the authors' ResNet-50 models, --checkpoint without edge (resnet50), "
      f"--edge_checkpoint with edge (resnet50_edge)"
    )
  size = dict(width=model.width, stages=tuple(model.stages))
  if size == FULL_SIZE:
    return model, variables, None
  shown = ", ".join(f"{k}={v}" for k, v in size.items())
  return model, variables, f"{path} is a reduced PoolNet ({shown}): not the paper's model"


def _reduced(state_dict):
  """The ModelSpec of a state_dict that fits a PoolNet of another width or stage count
  exactly, else None (full-size files, and files that fit nothing, go to_flax)."""
  for spec in inspector.candidates(state_dict):
    if not spec.options():
      continue
    if not any(mapping.mismatch(state_dict, mapping.expected_state_dict(spec))):
      return spec
  return None


@dataclasses.dataclass
class SetCheck:
  """One paper set as found: its source (None when missing), count and status."""

  key: str
  spec: str
  found: Optional[int]
  source: object = None
  error: str = ""  # why the set could not be loaded

  @property
  def paper(self):
    return SETS[self.key]

  @property
  def status(self):
    if self.found is None:
      return "missing"
    if self.found == self.paper.expected or self.found in self.paper.also_complete:
      return "complete"
    return "incomplete" if self.found < self.paper.expected else "count differs"

  def message(self):
    """Why the set is not the authors' list ('' when it is), naming it and both counts."""
    title, expected = f"{self.paper.title} ({self.spec})", self.paper.expected
    hint = f"; {self.paper.hint}" if self.paper.hint else ""
    if self.status == "missing":
      return f"{title}: missing, expected {expected} images, found none: {self.error}"
    if self.status == "complete":
      return "" if self.found == expected else f"{title}: {self.found} images{hint}"
    what = "incomplete" if self.status == "incomplete" else "not the authors' test list"
    return f"{title}: {what}, expected {expected} images, found {self.found}{hint}"


def check_sets(sets, data_dir=None, manual_dir=None, load=None):
  """[SetCheck] of {key: TFDS spec}: each set loaded (built from `manual_dir` if need be) and
  counted. A set that cannot be loaded is "missing", with the reason. `load(spec, data_dir,
  manual_dir)` defaults to `data.datasets.load_dataset`."""
  if load is None:
    from poolnet_jax.data.datasets import load_dataset as load  # pylint: disable=import-outside-toplevel
  checks = []
  for key, spec in sets.items():
    try:
      source = load(spec, data_dir, manual_dir)
    except (ValueError, FileNotFoundError) as error:  # UserError is a ValueError
      checks.append(SetCheck(key, spec, None, error=_first_line(error)))
      continue
    checks.append(SetCheck(key, spec, len(source), source))
  return checks


def _first_line(error):
  lines = str(error).strip().splitlines()
  return lines[0].rstrip(":") if lines else type(error).__name__


def count_problems(checks):
  """The message of every set that is not the authors' list (missing, incomplete, another
  count); [] when all are."""
  return [check.message() for check in checks if check.status != "complete"]


def score(models, checks, protocol="pysodmetrics", progress=True, **evaluate_kwargs):
  """Rows of the table: per set, per model {variant: (model, variables)}, the measures beside
  the paper's. A missing set gives rows without measures; any other set is scored over the
  images it holds, its status kept in the row. `evaluate_kwargs` go to evaluate_model."""
  rows = []
  for check in checks:
    for variant, (model, variables) in models.items():
      row = {
        "dataset": check.paper.title,
        "spec": check.spec,
        "model": MODELS[variant],
        "images": check.found or 0,
        "expected": check.paper.expected,
        "status": check.status,
        "protocol": protocol,
      }
      results = {}
      if check.source is not None and check.found:
        label = f"{check.paper.title} {MODELS[variant]}" if progress else None
        metrics = predictor_lib.evaluate_model(
          model, variables, check.source, protocol=protocol, progress=label, **evaluate_kwargs
        )
        results = metrics.results()
        row["background_only"] = len(metrics.background_only)
      published = PAPER.get((variant, check.key), {})
      for key in MEASURES:
        ours, paper = results.get(key), published.get(key)
        row[key], row[f"{key}_paper"] = ours, paper
        row[f"{key}_diff"] = None if ours is None or paper is None else ours - paper
      row["note"] = check.message()
      rows.append(row)
  return rows


COLUMNS = (
  "dataset",
  "model",
  "images",
  "expected",
  "status",
  *(f"{key}{tail}" for key in MEASURES for tail in ("", "_paper", "_diff")),
  "protocol",
  "spec",
  "note",
)


def _number(value, digits=4, signed=False):
  if value is None:
    return "-"
  return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def format_table(rows, notes=()):
  """The rows as an aligned text table, differences from the paper signed; the notes below."""
  header = ["dataset", "model", "images", "status"]
  header += [f"{key}{tail}" for key in MEASURES for tail in ("", " paper", " diff")]
  lines = [header]
  for row in rows:
    line = [row["dataset"], row["model"], f"{row['images']}/{row['expected']}", row["status"]]
    for key in MEASURES:
      line += [
        _number(row[key]),
        _number(row[f"{key}_paper"], 3),
        _number(row[f"{key}_diff"], signed=True),
      ]
    lines.append(line)
  widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
  text = [
    "  ".join(
      cell.ljust(w) if i < 4 else cell.rjust(w) for i, (cell, w) in enumerate(zip(l, widths))
    )
    for l in lines
  ]
  messages = list(dict.fromkeys(row["note"] for row in rows if row["note"]))
  protocols = sorted({row["protocol"] for row in rows})
  ours = f"ours: protocol {', '.join(protocols)}"
  if "salmetric" not in protocols:
    ours += " (--protocol salmetric follows the authors' evaluator)"
  below = [PAPER_NOTE, ours, *messages, *notes]
  return "\n".join(text + [""] + below)


def format_csv(rows):
  buffer = io.StringIO()
  writer = csv.DictWriter(buffer, COLUMNS, extrasaction="ignore", lineterminator="\n")
  writer.writeheader()
  writer.writerows({k: "" if v is None else v for k, v in row.items()} for row in rows)
  return buffer.getvalue().rstrip("\n")


def format_json(rows):
  return "\n".join(json.dumps({key: row.get(key) for key in COLUMNS}) for row in rows)


def write(out, rows, notes=()):
  """paper_table.txt, .csv and .json (one object per row and line) in folder `out`."""
  os.makedirs(out, exist_ok=True)
  for suffix, text in (
    ("txt", format_table(rows, notes)),
    ("csv", format_csv(rows)),
    ("json", format_json(rows)),
  ):
    Path(out, f"paper_table.{suffix}").write_text(text + "\n")
