"""Worker processes and the interleaved timing of a JAX and a PyTorch worker."""

import dataclasses
import json
import os
import statistics
import subprocess
import sys

from bench import common


class Worker:
  """`python -m bench.worker FRAMEWORK ...` as a context manager; `ask` sends one command."""

  def __init__(self, framework, threads, directory, cache_dir="", env=None):
    self.framework = framework
    self.process = subprocess.Popen(
      [sys.executable, "-m", "bench.worker", framework, str(threads), directory, cache_dir],
      stdin=subprocess.PIPE,
      stdout=subprocess.PIPE,
      text=True,
      cwd=common.REPO,
      env={**os.environ, **(env or {})},
    )
    self.info = self._read()

  def _read(self):
    line = self.process.stdout.readline()
    if not line:
      raise RuntimeError(
        f"the {self.framework} worker exited (code {self.process.wait()}); its error is above"
      )
    return json.loads(line)

  def ask(self, command):
    self.process.stdin.write(json.dumps(command) + "\n")
    self.process.stdin.flush()
    return self._read()

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    if self.process.poll() is None:
      try:
        self.process.stdin.write('{"exit": 0}\n')
        self.process.stdin.close()
      except BrokenPipeError:
        pass
      self.process.wait(timeout=60)


class Pair:
  """A torch and a JAX worker alive together; `time` interleaves their runs of one task."""

  def __init__(self, threads, directory, cache_dir, env=None):
    self.args = (threads, directory, cache_dir, env)

  def time(self, task, repeats):
    with Worker("torch", *self.args) as torch_worker, Worker("jax", *self.args) as jax_worker:
      workers = {"torch": torch_worker, "jax": jax_worker}
      setup = {name: w.ask({"setup": dataclasses.asdict(task)}) for name, w in workers.items()}
      times = {"jax": [], "torch": []}
      for i in range(repeats):  # A B B A ...: neither side always runs right after the other
        for name in ("jax", "torch") if i % 2 == 0 else ("torch", "jax"):
          times[name] += workers[name].ask({"run": 1})["times"]
      rss = {name: w.ask({"rss": 0})["peak_rss_mb"] for name, w in workers.items()}
      versions = {name: w.info for name, w in workers.items()}
    medians = {name: statistics.median(t) for name, t in times.items()}
    return {
      "task": dataclasses.asdict(task),
      "label": task.label,
      "times": times,
      "median_s": medians,
      "ratio": medians["torch"] / medians["jax"],
      "compile_s": setup["jax"]["compile_s"],
      "warmup_s": setup,
      "peak_rss_mb": rss,
      "versions": versions,
      "loadavg": _loadavg(),
    }


def _loadavg():
  with open("/proc/loadavg") as f:
    return float(f.read().split()[0])
