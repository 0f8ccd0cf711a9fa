"""One framework in its own process, driven by JSON lines on stdin (bench/__main__.py).

    python -m bench.worker {jax|torch} THREADS DIRECTORY [CACHE_DIR]

Commands: {"setup": TASK} builds a runner (and warms it up), {"run": N} times N
calls, {"compile": TASK} times a train-step compilation, {"eval": [MODEL, SIZES]}
counts compilations of an evaluation pass, {"rss": 0} reports the peak resident
memory. Every reply is one JSON line.
"""

import json
import os
import resource
import sys
import time

from bench import common


def _peak_rss_mb():
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def serve(framework, threads, directory, cache_dir):
  global _channel
  # Replies go to a private copy of stdout; anything the libraries print goes to stderr.
  _channel = os.fdopen(os.dup(1), "w")
  os.dup2(2, 1)
  sys.stdout = sys.stderr
  cpus = common.pin_cpus(threads)
  if framework == "jax":
    from bench import jax_side as side  # pylint: disable=g-import-not-at-top

    info = side.setup(threads, cache_dir)
  else:
    from bench import torch_side as side  # pylint: disable=g-import-not-at-top

    info = side.setup(threads)
  reply({"ready": framework, "cpus": cpus, **info})
  runner = None
  for line in sys.stdin:
    command = json.loads(line)
    if "setup" in command:
      task = common.Task(**command["setup"])
      result = side.make_runner(task, directory)
      runner, compile_seconds = result if isinstance(result, tuple) else (result, None)
      start = time.perf_counter()
      runner()  # warm-up: first-run allocations, caches, autotuning
      reply({"compile_s": compile_seconds, "warmup_s": time.perf_counter() - start})
    elif "run" in command:
      times, cpu = [], []
      for _ in range(command["run"]):
        start, start_cpu = time.perf_counter(), time.process_time()
        runner()
        times.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
      reply({"times": times, "cpu": cpu})
    elif "compile" in command:
      reply({"compile_s": side.compile_train_step(common.Task(**command["compile"]), directory)})
    elif "eval" in command:
      model, sizes = command["eval"]
      compiles, seconds = side.evaluation_compiles(model, directory, [tuple(s) for s in sizes])
      reply({"compiles": compiles, "seconds": seconds})
    elif "rss" in command:
      reply({"peak_rss_mb": _peak_rss_mb()})
    elif "exit" in command:
      break


_channel = sys.stdout


def reply(message):
  _channel.write(json.dumps(message) + "\n")
  _channel.flush()


if __name__ == "__main__":
  serve(sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4] if len(sys.argv) > 4 else "")
