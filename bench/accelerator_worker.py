"""The accelerator suite's worker: one framework's process for `python -m bench.accelerator`
(bench/harness.py), driven by JSON lines on stdin.

    python -m bench.accelerator_worker {jax|torch}

Commands: {"prepare": {...}} (torch writes the weights, JAX converts them), {"build": ITEM}
(compiles or builds a runner and warms it up; built runners are kept by key), {"run": KEY,
"n": N} times N synchronised calls, {"logits": KEY, "path": FILE} saves an inference
runner's NHWC float32 logits, {"memory": KEY}, {"exit": 0}. Every reply is one JSON line;
a command that fails replies {"error": ...} and the worker carries on (harness.serve).
"""

import dataclasses
import functools
import sys
import time
from typing import Optional

from bench import common, harness


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


def start(framework):
  side = _side(framework)
  return {"ready": framework, **side.setup()}, functools.partial(_handle, side, {})


if __name__ == "__main__":
  harness.serve(lambda: start(sys.argv[1]))
