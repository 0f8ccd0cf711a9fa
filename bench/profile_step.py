"""Where a JAX train step spends its time, by XLA operation kind.

    python -m bench.profile_step [--model resnet50] [--kind train|infer] [--batch 1]
        [--size 300,400]

Traces a few steps with `jax.profiler` (a Perfetto JSON trace, no extra
packages) and sums the duration of XLA's CPU operations by kind (fusion kinds,
copies, ...); convolutions (YNNPACK fusions) are split by role, read from the
compiled HLO: forward, gradient of the input, gradient of the kernel (an output
shaped like a kernel). Durations add up over XLA's threads, which run
independent operations at the same time. BENCHMARKS.md's profile evidence
comes from here. With the project's XLA flags (runtime.apply_xla_defaults) the
large matrix products and convolutions run asynchronously and the trace holds
only their launch; POOLNET_JAX_XLA_DEFAULTS=0 (YNNPACK fusions) times them all.
"""

import argparse
import collections
import glob
import gzip
import json
import re
import tempfile

import jax

from bench import common, jax_side, torch_side
from poolnet_jax import runtime

KIND = re.compile(r"^([a-z_-]+?)(?:[._]\d+)*$")
CONVOLUTION = re.compile(
  r"%((?:ynn_fusion|conv_general_dilated|convolution)\.\d+) = "
  r"f32\[([\d,]*)\][^\n]*"
)


def events(trace_dir):
  """Complete events ("ph" == "X") of the Perfetto trace written under `trace_dir`."""
  path = glob.glob(f"{trace_dir}/**/*.trace.json.gz", recursive=True)[0]
  with gzip.open(path) as f:
    trace = json.load(f)
  return [e for e in trace["traceEvents"] if e.get("ph") == "X"]


def conv_roles(hlo_text):
  """{convolution name: "conv forward" | "conv input grad" | "conv kernel grad"} from HLO text."""
  roles = {}
  for match in re.finditer(CONVOLUTION, hlo_text):
    dims = [int(d) for d in match.group(2).split(",") if d]
    if len(dims) == 4 and dims[1] == dims[2] and dims[1] in (1, 3) and dims[0] > 3:
      roles[match.group(1)] = "conv kernel grad"
    elif "transpose(" in match.group(0):
      roles[match.group(1)] = "conv input grad"
    else:
      roles[match.group(1)] = "conv forward"
  return roles


def by_kind(trace_events, steps, roles):
  """{op kind: ms per step} of XLA operations (names like fusion.12, convolution.3)."""
  totals = collections.Counter()
  for event in trace_events:
    match = KIND.match(event.get("name", ""))
    if match and "hlo_op" in event.get("args", {}):
      kind = roles.get(event["name"], match.group(1))
      totals[kind] += event["dur"] / 1e3 / steps
  return totals


def main():
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument("--model", default="resnet50")
  parser.add_argument("--kind", default="train", choices=["train", "infer"])
  parser.add_argument("--size", default="300,400")
  parser.add_argument("--batch", type=int, default=1)
  parser.add_argument("--steps", type=int, default=3)
  parser.add_argument("--threads", type=int, default=2)
  args = parser.parse_args()
  common.pin_cpus(args.threads)
  runtime.apply_xla_defaults()
  task = common.Task(args.kind, args.model, args.batch, *map(int, args.size.split(",")))
  with tempfile.TemporaryDirectory() as directory:
    torch_side.build_model(task.model, directory)  # the weights file both sides read
    run, _, compiled = jax_side.make_runner(task, directory, with_compiled=True)
    run()
    with jax.profiler.trace(directory, create_perfetto_trace=True):
      for _ in range(args.steps):
        run()
    totals = by_kind(events(directory), args.steps, conv_roles(compiled.as_text()))
  print(f"{task.label}: {sum(totals.values()):.0f} ms per step in XLA operations")
  for kind, ms in totals.most_common(12):
    print(f"  {kind:<24} {ms:8.1f} ms")


if __name__ == "__main__":
  main()
