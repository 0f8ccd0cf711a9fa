"""`python -m bench.accelerator [--tiny]`: JAX against PyTorch on one accelerator, side by side.

ResNet-50 PoolNet, the same converted weights and inputs on both sides, each framework in
its own worker process (bench/accelerator_worker.py) on the same device, their timed calls
alternated (A B B A ...), medians after warm-up, every call synchronised:

- inference and the train step, batch 1 at 300x400 (the paper's protocol) and batch 16
  at 320x320: bfloat16 (JAX `dtype=bfloat16`; PyTorch autocast, channels_last) and
  float32 (JAX at default and highest precision; PyTorch with and without TF32);
- JAX compile time and executable memory per item, PyTorch's first call and peak memory;
- parity at 1x300x400: JAX float32-highest, JAX default and bfloat16 logits against
  PyTorch float32 (TF32 off);
- JAX bfloat16 with `resize_conv` on against off;
- JAX bfloat16 train step with `remat` (blocks recomputed in the backward pass) against
  without: speed and executable memory;
- JAX bfloat16 against PyTorch bfloat16 under `torch.compile` (the eager rows above are
  PyTorch's default; compiled is its fastest).

It runs on a GPU that both JAX and PyTorch see (it exits at start otherwise), or with
`--tiny` anywhere. Every worker command has a timeout (`--command-timeout-s`): a worker
that does not answer is killed and its remaining items are reported as errors.

Items run in order of importance under a global time budget (`--budget-s`): an item that
would overrun it is skipped with a note. Writes one JSON file, prints markdown tables and,
as the last line, `gpu jax/torch inference ratio=X train ratio=Y` (bfloat16, batched:
JAX images/s over PyTorch's). `--tiny` is the CPU smoke run of the same command (1/8
width, one block per stage, 112-pixel inputs, 2 timed calls; the word "gpu" stays).
JAX compile times are cold unless $POOLNET_JAX_CACHE names a persistent compilation cache.
"""

import dataclasses
import datetime
import json
import os
import statistics
import sys
import tempfile
import time

import numpy as np

from bench import accelerator_report as report
from bench import common, harness
from bench.accelerator_worker import Item

SHAPES = {"paper": (1, 300, 400), "batched": (16, 320, 320)}
TINY_SHAPES = {"paper": (1, 112, 144), "batched": (2, 112, 112)}
TIMING_S = 3.0  # timed seconds per side and item, within the repeat bounds
REPEATS = {"infer": (5, 20), "train": (5, 10)}
FP32_FAST = "float32, JAX default precision / PyTorch TF32"
FP32_EXACT = "float32, JAX highest precision / PyTorch no TF32"
# The two sides of a step: (framework, precision, resize_conv).
BF16 = (("jax", "bfloat16", None), ("torch", "bfloat16", None))
FAST = (("jax", "float32", None), ("torch", "float32-tf32", None))
EXACT = (("jax", "float32-highest", None), ("torch", "float32", None))
RESIZE = (("jax", "bfloat16", True), ("jax", "bfloat16", False))
REMAT = (("jax", "bfloat16", None, "remat"), ("jax", "bfloat16", None))
COMPILED = (("jax", "bfloat16", None), ("torch", "bfloat16", None, "compile"))


@dataclasses.dataclass(frozen=True)
class Step:
  """One pair timed side by side: `a` and `b` are (framework, precision, resize_conv[,
  option]).
  `tiny`: part of the --tiny run, which keeps one train step (each costs a compile of
  tens of seconds on a CPU) and each other kind of step once."""

  section: str  # "parity" or one of SECTIONS
  kind: str
  shape: str  # a key of SHAPES
  precision: str
  a: tuple = ()
  b: tuple = ()
  tiny: bool = True


def plan(tiny=False):
  """The steps, most important first (the summary line's pairs, then parity, ...)."""

  def pair(section, kind, shape, precision, sides, in_tiny=True):
    return Step(section, kind, shape, precision, *sides, in_tiny)

  return [
    step
    for step in [
      pair("inference", "infer", "batched", "bfloat16", BF16),
      pair("train", "train", "batched", "bfloat16", BF16),
      pair("inference", "infer", "paper", "bfloat16", BF16),
      pair("train", "train", "paper", "bfloat16", BF16, False),
      Step("parity", "infer", "paper", "float32 and bfloat16"),
      pair("inference", "infer", "batched", FP32_FAST, FAST, False),
      pair("inference", "infer", "batched", FP32_EXACT, EXACT, False),
      pair("inference", "infer", "paper", FP32_FAST, FAST),
      pair("inference", "infer", "paper", FP32_EXACT, EXACT),
      pair("train", "train", "batched", FP32_FAST, FAST, False),
      pair("train", "train", "paper", FP32_FAST, FAST, False),
      pair("resize_conv", "infer", "batched", "bfloat16", RESIZE),
      pair("resize_conv", "train", "batched", "bfloat16", RESIZE, False),
      pair("resize_conv", "infer", "paper", "bfloat16", RESIZE, False),
      pair("resize_conv", "train", "paper", "bfloat16", RESIZE, False),
      pair("remat", "train", "batched", "bfloat16", REMAT),
      pair("torch_compile", "infer", "batched", "bfloat16", COMPILED),
      pair("torch_compile", "train", "batched", "bfloat16", COMPILED, False),
    ]
    if step.tiny or not tiny
  ]


def parse_args(argv):
  parser = harness.parser("python -m bench.accelerator", __doc__)
  parser.add_argument(
    "--tiny",
    action="store_true",
    help="the CPU smoke run: small model and inputs, seconds per item",
  )
  parser.add_argument(
    "--out", default="runs/accelerator", help="folder of the JSON file when --json is not given"
  )
  parser.add_argument("--json", default="", help="the JSON file (default OUT/accelerator.json)")
  parser.add_argument(
    "--budget-s",
    type=float,
    default=420.0,
    help="skip the items that would end after this many seconds (default 420)",
  )
  parser.add_argument(
    "--repeats",
    type=int,
    default=0,
    help=f"timed calls per side and item (default: about {TIMING_S:.0f} s "
    "worth, 5-20; 2 with --tiny)",
  )
  parser.add_argument(
    "--conv",
    choices=("xla", "fast"),
    default=None,
    help="JAX convolutions (default: the backend's; xla with --tiny, the accelerators' path)",
  )
  parser.add_argument(
    "--command-timeout-s",
    type=float,
    default=900.0,
    help="a worker that gives no reply to one command in this many seconds is killed (default 900)",
  )
  parser.add_argument(
    "--warmups",
    type=int,
    default=None,
    help="untimed calls after the first one (default 2; 1 with --tiny)",
  )
  return parser.parse_args(argv)


class Run:
  """The two workers and what they measured, step by step."""

  def __init__(self, args, workers, directory, start):
    self.args, self.workers, self.directory, self.start = args, workers, directory, start
    self.shapes = TINY_SHAPES if args.tiny else SHAPES
    self.costs = {}  # the longest step so far of each kind, for the budget
    self.results = {section: [] for section in report.SECTIONS}
    self.results.update(parity={}, skipped=[])

  def item(self, step, side):
    framework, precision, resize_conv, *option = side
    item = Item(step.kind, *self.shapes[step.shape], precision, resize_conv, *option)
    return framework, item

  def build(self, side_item):
    framework, item = side_item
    reply = self.workers[framework].safe_ask({"build": dataclasses.asdict(item)})
    return {
      "framework": framework,
      "precision": item.precision,
      "resize_conv": item.resize_conv,
      "option": item.option,
      **reply,
    }

  def repeats(self, kind, sides):
    if self.args.repeats:
      return self.args.repeats
    if self.args.tiny:
      return 2
    low, high = REPEATS[kind]
    warm = max([s["warm_s"] for s in sides if "warm_s" in s] or [1.0])
    return max(low, min(high, int(TIMING_S / max(warm, 1e-6))))

  def pair(self, step):
    """Both sides built, their calls alternated; a row of the step's section."""
    batch, height, width = self.shapes[step.shape]
    sides = [self.build(self.item(step, step.a)), self.build(self.item(step, step.b))]

    def run(j):
      reply = self.workers[sides[j]["framework"]].safe_ask({"run": sides[j]["key"], "n": 1})
      if "error" in reply:
        raise RuntimeError(reply["error"])
      return reply["times"]

    built = tuple(j for j in (0, 1) if "error" not in sides[j])
    times, errors = harness.alternate(run, built, self.repeats(step.kind, sides))
    for j, error in errors.items():
      sides[j]["error"] = error
    for side, measured in zip(sides, (times.get(0), times.get(1))):
      if "error" not in side and measured:
        side.update(times=measured, median_s=statistics.median(measured))
        side["images_per_s"] = batch / side["median_s"]
        side.update(self.workers[side["framework"]].safe_ask({"memory": side["key"]}))
    ips = [s.get("images_per_s") for s in sides]
    return {
      "kind": step.kind,
      "batch": batch,
      "height": height,
      "width": width,
      "label": f"{'inference' if step.kind == 'infer' else 'train step'} {batch}x{height}x{width}",
      "precision": step.precision,
      "a": sides[0],
      "b": sides[1],
      "ratio": ips[0] / ips[1] if all(ips) else None,
    }

  def parity(self, step):
    """Logits of several settings against PyTorch float32 (TF32 off), same inputs."""
    sides = {
      "PyTorch float32": ("torch", "float32", None),
      "JAX float32, highest precision": ("jax", "float32-highest", None),
      "JAX float32, default precision": ("jax", "float32", None),
      "JAX bfloat16": ("jax", "bfloat16", None),
      "PyTorch bfloat16 (autocast)": ("torch", "bfloat16", None),
    }
    if self.workers["torch"].info.get("device", "cpu") != "cpu":
      sides["PyTorch float32, TF32"] = ("torch", "float32-tf32", None)
    logits = {}
    for name, side in sides.items():
      built = self.build(self.item(step, side))
      path = os.path.join(self.directory, f"logits-{len(logits)}.npy")
      reply = (
        built
        if "error" in built
        else self.workers[side[0]].safe_ask({"logits": built["key"], "path": path})
      )
      logits[name] = reply if "error" in reply else np.load(path).astype(np.float64)
    reference = logits.pop("PyTorch float32")
    against = {}
    for name, value in logits.items():
      if isinstance(reference, dict) or isinstance(value, dict):
        against[name] = {"error": (value if isinstance(value, dict) else reference)["error"]}
      else:
        against[name] = {
          "rel_l2": float(np.linalg.norm(value - reference) / np.linalg.norm(reference)),
          "max_abs_map": float(np.max(np.abs(_sigmoid(value) - _sigmoid(reference)))),
        }
    return {
      "shape": list(self.shapes[step.shape]),
      "reference": "PyTorch float32 (TF32 off)",
      "against": against,
    }

  def execute(self, step):
    cost_key = "parity" if step.section == "parity" else step.kind
    elapsed = time.time() - self.start
    estimate = self.costs.get(cost_key, 0.0)
    if elapsed + estimate > self.args.budget_s:
      note = (
        f"{step.section}, {step.kind} {step.shape} {step.precision}: skipped, "
        f"{elapsed:.0f} s of the {self.args.budget_s:.0f} s budget gone"
        + (f" and such a step took {estimate:.0f} s" if estimate else "")
      )
      self.results["skipped"].append(note)
      print(note, file=sys.stderr, flush=True)
      return
    begin = time.time()
    if step.section == "parity":
      self.results["parity"] = self.parity(step)
    else:
      row = self.pair(step)
      row["shape"] = step.shape
      self.results[step.section].append(row)
    spent = time.time() - begin
    self.costs[cost_key] = max(self.costs.get(cost_key, 0.0), spent)
    report.progress(step, self.results, spent)


def _sigmoid(x):
  return 1.0 / (1.0 + np.exp(-x))


def summary(results):
  """bfloat16, batched: JAX images/s over PyTorch's, inference and train step (None: missing)."""

  def ratio(section):
    row = next(
      (r for r in results[section] if r["shape"] == "batched" and r["precision"] == "bfloat16"),
      None,
    )
    return row and row["ratio"]

  return {"inference_ratio": ratio("inference"), "train_ratio": ratio("train")}


def _start_workers(timeout_s):
  # JAX takes GPU memory as it goes (it shares the device with PyTorch); the torch
  # worker, which imports poolnet_jax for its shapes, keeps JAX off the device.
  env = {
    "jax": {
      "XLA_PYTHON_CLIENT_PREALLOCATE": os.environ.get("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    },
    "torch": {"JAX_PLATFORMS": "cpu"},
  }
  workers = {
    name: harness.Worker("bench.accelerator_worker", name, env=env[name], timeout_s=timeout_s)
    for name in ("torch", "jax")
  }
  for worker in workers.values():  # both spawned first: their imports overlap
    worker.start()
  return workers


def not_on_a_gpu(workers, tiny):
  """The one line that stops a full run unless JAX's backend is gpu and PyTorch sees CUDA
  (None: go on). `--tiny` runs anywhere."""
  backend = workers["jax"].info.get("backend")
  device = str(workers["torch"].info.get("device") or "")
  if tiny or (backend == "gpu" and device.startswith("cuda")):
    return None
  return (
    f"bench.accelerator measures a GPU: JAX's backend is {backend or 'not started'} and "
    f"PyTorch's device is {device or 'not started'} (both must be a CUDA GPU; "
    "--tiny runs the smoke run anywhere)"
  )


def main(argv=None):
  argv = sys.argv[1:] if argv is None else argv
  args = parse_args(argv)
  warmups = args.warmups if args.warmups is not None else (1 if args.tiny else 2)
  overrides = dict(common.TINY) if args.tiny else {}
  conv = args.conv or ("xla" if args.tiny else None)
  json_path = args.json or os.path.join(args.out, "accelerator.json")
  os.makedirs(os.path.dirname(os.path.abspath(json_path)), exist_ok=True)
  start = time.time()
  with tempfile.TemporaryDirectory(prefix="poolnet-accelerator-") as directory:
    workers = _start_workers(args.command_timeout_s)
    with workers["torch"], workers["jax"]:
      refusal = not_on_a_gpu(workers, args.tiny)
      if refusal:
        print(refusal, file=sys.stderr)
        return 2
      prepare = {"directory": directory, "overrides": overrides, "warmups": warmups}
      prepared = {
        "torch": workers["torch"].safe_ask({"prepare": prepare}),
        "jax": workers["jax"].safe_ask({"prepare": {**prepare, "conv": conv}}),
      }
      run = Run(args, workers, directory, start)
      results = run.results
      results.update(
        command=["python", "-m", "bench.accelerator", *argv],
        tiny=args.tiny,
        date=datetime.datetime.now().isoformat(timespec="seconds"),
        platform=workers["jax"].info.get("backend"),
        torch_device=workers["torch"].info.get("device"),
        versions={
          "python": sys.version.split()[0],
          "jax": workers["jax"].info,
          "torch": workers["torch"].info,
        },
        model={"name": "resnet50", "overrides": overrides, "prepared": prepared},
        shapes=run.shapes,
        budget_s=args.budget_s,
        warmups=warmups,
        conv=conv,
      )
      for step in plan(args.tiny):
        run.execute(step)
        _write(results, json_path, start, complete=False)  # a killed run keeps what it has
  _write(results, json_path, start, complete=True)
  report.print_results(results, json_path)
  return 1 if report.errors(results) else 0


def _write(results, path, start, complete):
  results.update(wall_s=time.time() - start, complete=complete, summary=summary(results))
  results["goals"] = report.goals(results)
  with open(path + ".tmp", "w") as f:
    json.dump(results, f, indent=2)
  os.replace(path + ".tmp", path)


if __name__ == "__main__":
  sys.exit(main())
