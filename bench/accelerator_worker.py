"""One framework's process for `python -m bench.accelerator`, driven by JSON lines on stdin.

    python -m bench.accelerator_worker {jax|torch}

Commands: {"prepare": {...}} (torch writes the weights, JAX converts them), {"build": ITEM}
(compiles or builds a runner and warms it up; built runners are kept by key), {"run": KEY,
"n": N} times N synchronised calls, {"logits": KEY, "path": FILE} saves an inference
runner's NHWC float32 logits, {"memory": KEY}, {"exit": 0}. Every reply is one JSON line;
a command that fails replies {"error": ...} and the worker carries on.
"""

import dataclasses
import json
import os
import select
import subprocess
import sys
import time
import traceback
from typing import Optional

from bench import common
from bench.pair import Worker


@dataclasses.dataclass(frozen=True)
class Item:
  """One measured thing on one framework. `precision`: JAX "float32" (default precision),
  "float32-highest", "bfloat16"; PyTorch "float32" (no TF32), "float32-tf32", "bfloat16".
  `resize_conv` None is the project's default (JAX only). `option`: "remat" (JAX: the
  blocks recomputed in the backward pass) or "compile" (PyTorch: `torch.compile`)."""

  kind: str  # "infer" or "train"
  batch: int
  height: int
  width: int
  precision: str
  resize_conv: Optional[bool] = None
  option: Optional[str] = None

  @property
  def key(self):
    return (
      f"{self.kind}-{self.batch}x{self.height}x{self.width}-{self.precision}"
      f"-resize_conv={self.resize_conv}-option={self.option}"
    )

  def task(self):
    return common.Task(self.kind, "resnet50", self.batch, self.height, self.width)


class AcceleratorWorker(Worker):
  """`python -m bench.accelerator_worker FRAMEWORK`; `ready()` waits for its start."""

  def __init__(self, framework, env=None, timeout_s=600.0):  # pylint: disable=super-init-not-called
    self.framework, self.timeout_s = framework, timeout_s
    self.process = subprocess.Popen(
      [sys.executable, "-m", "bench.accelerator_worker", framework],
      stdin=subprocess.PIPE,
      stdout=subprocess.PIPE,
      text=True,
      cwd=common.REPO,
      env={**os.environ, **(env or {})},
    )
    self.info, self.dead = {}, False

  def ready_or_error(self):
    """Waits for the worker's start; a worker that fails it is marked dead, not fatal."""
    try:
      self.info = self._read()
    except RuntimeError as error:
      self.info, self.dead = {"error": str(error)}, True
    return self.info

  def _read(self):
    """The next reply, or RuntimeError when none comes in `timeout_s` (the worker is
    killed: a hung compile or a stuck device must not hold the whole run)."""
    ready, _, _ = select.select([self.process.stdout], [], [], self.timeout_s)
    if not ready:
      self.process.kill()
      self.process.wait()
      raise RuntimeError(f"the {self.framework} worker gave no reply in {self.timeout_s:g} s")
    return super()._read()

  def safe_ask(self, command):
    """`ask`, with a dead worker's failure as an {"error": ...} reply."""
    if self.dead:
      return {"error": f"the {self.framework} worker is not running"}
    try:
      return self.ask(command)
    except (RuntimeError, OSError, ValueError) as error:
      self.dead = True
      return {"error": str(error)}


def _side(framework):
  # pylint: disable=import-outside-toplevel
  if framework == "jax":
    from bench import accelerator_jax as side
  elif framework == "torch":
    from bench import accelerator_torch as side
  else:
    raise ValueError(f"unknown framework {framework!r}; expected 'jax' or 'torch'")
  return side


def _handle(side, runners, command):
  if "prepare" in command:
    return side.prepare(**command["prepare"])
  if "build" in command:
    item = side.normalize(Item(**command["build"]))
    side.reset_peak(runners.get(item.key))
    cached = item.key in runners
    if not cached:
      runners[item.key] = side.build(item)
    return {"key": item.key, "cached": cached, **runners[item.key].info}
  runner = runners[command.get("run") or command.get("logits") or command.get("memory")]
  if "run" in command:
    times = []
    for _ in range(command["n"]):
      start = time.perf_counter()
      runner.call()
      times.append(time.perf_counter() - start)
    return {"times": times}
  if "logits" in command:
    import numpy as np  # pylint: disable=import-outside-toplevel

    np.save(command["path"], runner.logits())
    return {"path": command["path"]}
  return side.memory(runner, runners)


def serve(framework):
  # Replies go to a private copy of stdout; anything the libraries print goes to stderr.
  channel = os.fdopen(os.dup(1), "w")
  os.dup2(2, 1)
  sys.stdout = sys.stderr

  def reply(message):
    channel.write(json.dumps(message) + "\n")
    channel.flush()

  side = _side(framework)
  reply({"ready": framework, **side.setup()})
  runners = {}
  for line in sys.stdin:
    command = json.loads(line)
    if "exit" in command:
      break
    try:
      reply(_handle(side, runners, command))
    except Exception as error:  # pylint: disable=broad-except
      traceback.print_exc()
      reply({"error": f"{type(error).__name__}: {error}"[:2000]})


if __name__ == "__main__":
  serve(sys.argv[1])
