"""`python -m bench [--quick]`: PoolNet in JAX and in PyTorch, side by side, in one run.

Prints a table of medians and, as its last line,
`jax/torch inference ratio=X train ratio=Y` (JAX throughput over PyTorch's:
geometric mean over the inference models measured, and the paper-protocol train
step, batch 1 at 300x400, ResNet-50).
"""

import argparse
import json
import os
import sys
import tempfile
import time

from bench import report
from bench.common import Task
from bench.pair import Pair, Worker

NATIVE = (300, 400)  # a typical DUTS image size, the paper's batch-1 protocol
BATCHED = (8, 320, 320)
EVAL_SIZES = ((128, 160), (160, 128), (128, 160), (144, 176), (160, 128), (176, 144), (128, 160))


def parse_args(argv):
  parser = argparse.ArgumentParser(
    prog="python -m bench",
    description=__doc__,
    formatter_class=argparse.RawDescriptionHelpFormatter,
  )
  parser.add_argument(
    "--quick",
    action="store_true",
    help="inference of both models and the ResNet-50 paper-protocol train step "
    "only (about 4 minutes on 2 cores)",
  )
  parser.add_argument(
    "--threads", type=int, default=2, help="CPUs (and threads) for each framework (default 2)"
  )
  parser.add_argument("--repeats", type=int, default=10, help="timed runs per framework")
  parser.add_argument(
    "--train-repeats",
    type=int,
    default=None,
    help="timed train steps per framework (default: --repeats; 5 with --quick)",
  )
  parser.add_argument("--models", default="resnet50,vgg16", help="inference models")
  parser.add_argument("--json", default="", help="also write the results to this JSON file")
  return parser.parse_args(argv)


def plan(args):
  """(inference tasks, train tasks) to time side by side."""
  infer = [Task("infer", m, 1, *NATIVE) for m in args.models.split(",") if m]
  train = [Task("train", "resnet50", 1, *NATIVE)]
  if not args.quick:
    train += [Task("train", "vgg16", 1, *NATIVE), Task("train", "resnet50", *BATCHED)]
  return infer, train


def main(argv=None):
  args = parse_args(sys.argv[1:] if argv is None else argv)
  train_repeats = args.train_repeats or (5 if args.quick else args.repeats)
  start = time.time()
  results = {"load_before": report.loadavg(), "rows": [], "threads": args.threads}
  infer, train = plan(args)
  with tempfile.TemporaryDirectory(prefix="poolnet-bench-") as directory:
    cache = os.path.join(directory, "xla-cache")
    for task in infer:
      results["rows"].append(Pair(args.threads, directory, cache).time(task, args.repeats))
      report.progress(results["rows"][-1])
    for task in train:
      results["rows"].append(Pair(args.threads, directory, cache).time(task, train_repeats))
      report.progress(results["rows"][-1])
    # The first train step compiled cold into an empty cache; a new process reads it back.
    with Worker("jax", args.threads, directory, cache) as jax_worker:
      results["cached_compile_s"] = jax_worker.ask({"compile": vars(train[0])})["compile_s"]
      results["versions"] = {"jax": jax_worker.info}
      if not args.quick:
        results["evaluation"] = jax_worker.ask({"eval": ["resnet50", EVAL_SIZES]})
        results["evaluation"]["images"] = len(EVAL_SIZES)
        results["evaluation"]["sizes"] = len(set(EVAL_SIZES))
  results["load_after"] = report.loadavg()
  results["wall_s"] = time.time() - start
  if args.json:
    with open(args.json, "w") as f:
      json.dump(results, f, indent=2)
  report.print_results(results)


if __name__ == "__main__":
  main()
