"""The CPU suite's worker: one framework in its own process (bench/harness.py, bench/__main__.py).

    python -m bench.worker {jax|torch} THREADS DIRECTORY [CACHE_DIR]

Commands: {"setup": TASK} builds a runner (and warms it up), {"run": N} times N
calls, {"compile": TASK} times a train-step compilation, {"eval": [MODEL, SIZES]}
counts compilations of an evaluation pass, {"rss": 0} reports the peak resident
memory. Every reply is one JSON line.
"""

import resource
import sys
import time

from bench import common, harness


class Commands:
  """What each command does in the worker of `framework`, pinned to `threads` CPUs."""

  def __init__(self, framework, threads, directory, cache_dir):
    self.cpus = common.pin_cpus(threads)
    # pylint: disable=import-outside-toplevel
    if framework == "jax":
      from bench import jax_side as side

      self.info = side.setup(threads, cache_dir)
    else:
      from bench import torch_side as side

      self.info = side.setup(threads)
    self.framework, self.side, self.directory, self.runner = framework, side, directory, None

  def __call__(self, command):
    if "setup" in command:
      result = self.side.make_runner(common.Task(**command["setup"]), self.directory)
      self.runner, compile_seconds = result if isinstance(result, tuple) else (result, None)
      start = time.perf_counter()
      self.runner()  # warm-up: first-run allocations, caches, autotuning
      return {"compile_s": compile_seconds, "warmup_s": time.perf_counter() - start}
    if "run" in command:
      times, cpu = [], []
      for _ in range(command["run"]):
        start, start_cpu = time.perf_counter(), time.process_time()
        self.runner()
        times.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
      return {"times": times, "cpu": cpu}
    if "compile" in command:
      task = common.Task(**command["compile"])
      return {"compile_s": self.side.compile_train_step(task, self.directory)}
    if "eval" in command:
      model, sizes = command["eval"]
      sizes = [tuple(s) for s in sizes]
      compiles, seconds = self.side.evaluation_compiles(model, self.directory, sizes)
      return {"compiles": compiles, "seconds": seconds}
    if "rss" in command:
      return {"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0}
    raise ValueError(f"unknown command {sorted(command)}")


def start(framework, threads, directory, cache_dir=""):
  commands = Commands(framework, int(threads), directory, cache_dir)
  return {"ready": framework, "cpus": commands.cpus, **commands.info}, commands


if __name__ == "__main__":
  harness.serve(lambda: start(*sys.argv[1:]))
