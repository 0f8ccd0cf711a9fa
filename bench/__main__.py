"""`python -m bench [--quick | --tiny]`: PoolNet in JAX and in PyTorch, side by side, in one run.

Prints a table of medians and, as its last line,
`jax/torch inference ratio=X train ratio=Y` (JAX throughput over PyTorch's:
geometric mean over the inference models measured, and the paper-protocol train
step, batch 1 at 300x400, ResNet-50). `--tiny` is the smoke run of the same command
(ResNet-50 cut to 1/8 width and one block per stage, 1x112x144, 2 timed runs, no
evaluation pass): it checks the harness, not the speed.
"""

import dataclasses
import json
import os
import statistics
import sys
import tempfile
import time

from bench import harness, report
from bench.common import Task

NATIVE = (300, 400)  # a typical DUTS image size, the paper's batch-1 protocol
BATCHED = (8, 320, 320)
TINY_SHAPE = (1, 112, 144)
EVAL_SIZES = ((128, 160), (160, 128), (128, 160), (144, 176), (160, 128), (176, 144), (128, 160))


def parse_args(argv):
  parser = harness.parser("python -m bench", __doc__)
  parser.add_argument(
    "--quick",
    action="store_true",
    help="inference of both models and the ResNet-50 paper-protocol train step "
    "only (about 4 minutes on 2 cores)",
  )
  parser.add_argument(
    "--tiny", action="store_true", help="the smoke run: a tiny ResNet-50, seconds per task"
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
  if args.tiny:
    return [Task("infer", "resnet50", *TINY_SHAPE, True)], [
      Task("train", "resnet50", *TINY_SHAPE, True)
    ]
  infer = [Task("infer", m, 1, *NATIVE) for m in args.models.split(",") if m]
  train = [Task("train", "resnet50", 1, *NATIVE)]
  if not args.quick:
    train += [Task("train", "vgg16", 1, *NATIVE), Task("train", "resnet50", *BATCHED)]
  return infer, train


def worker(framework, threads, directory, cache_dir):
  """The CPU suite's worker (bench/worker.py) of `framework`, started."""
  started = harness.Worker("bench.worker", framework, (threads, directory, cache_dir))
  started.start(check=True)
  return started


def time_pair(task, repeats, threads, directory, cache_dir):
  """A torch and a JAX worker alive together, their runs of `task` alternated: a row."""
  args = (threads, directory, cache_dir)
  with worker("torch", *args) as torch_worker, worker("jax", *args) as jax_worker:
    workers = {"torch": torch_worker, "jax": jax_worker}
    task_fields = dataclasses.asdict(task)
    setup = {name: w.ask({"setup": task_fields}, check=True) for name, w in workers.items()}
    times, errors = harness.alternate(
      lambda name: workers[name].ask({"run": 1}, check=True)["times"], ("jax", "torch"), repeats
    )
    if errors:  # the CPU suite has no partial rows: a failed side stops the run
      raise RuntimeError(f"{task.label}: {'; '.join(errors.values())}")
    rss = {name: w.ask({"rss": 0}, check=True)["peak_rss_mb"] for name, w in workers.items()}
    versions = {name: w.info for name, w in workers.items()}
  medians = {name: statistics.median(t) for name, t in times.items()}
  return {
    "task": task_fields,
    "label": task.label,
    "times": times,
    "median_s": medians,
    "ratio": medians["torch"] / medians["jax"],
    "compile_s": setup["jax"]["compile_s"],
    "warmup_s": setup,
    "peak_rss_mb": rss,
    "versions": versions,
    "loadavg": harness.loadavg(),
  }


def main(argv=None):
  args = parse_args(sys.argv[1:] if argv is None else argv)
  if args.tiny:
    args.repeats = min(args.repeats, 2)
  train_repeats = args.train_repeats or (5 if args.quick else args.repeats)
  start = time.time()
  results = {
    "load_before": harness.loadavg(),
    "rows": [],
    "threads": args.threads,
    "tiny": args.tiny,
  }
  infer, train = plan(args)
  with tempfile.TemporaryDirectory(prefix="poolnet-bench-") as directory:
    where = (args.threads, directory, os.path.join(directory, "xla-cache"))
    for task in infer + train:
      repeats = args.repeats if task.kind == "infer" else train_repeats
      results["rows"].append(time_pair(task, repeats, *where))
      report.progress(results["rows"][-1])
    # The first train step compiled cold into an empty cache; a new process reads it back.
    with worker("jax", *where) as jax_worker:
      compiled = jax_worker.ask({"compile": vars(train[0])}, check=True)
      results["cached_compile_s"] = compiled["compile_s"]
      results["versions"] = {"jax": jax_worker.info}
      if not (args.quick or args.tiny):
        results["evaluation"] = jax_worker.ask({"eval": ["resnet50", EVAL_SIZES]}, check=True)
        results["evaluation"]["images"] = len(EVAL_SIZES)
        results["evaluation"]["sizes"] = len(set(EVAL_SIZES))
  results["load_after"] = harness.loadavg()
  results["wall_s"] = time.time() - start
  if args.json:
    with open(args.json, "w") as f:
      json.dump(results, f, indent=2)
  report.print_results(results)


if __name__ == "__main__":
  main()
