"""The one harness of the side-by-side benchmarks (`python -m bench`, `python -m bench.accelerator`).

Each framework runs in its own worker process (`Worker` here, `serve` there), driven by
JSON lines; `alternate` times two sides' calls in the order A B B A ...; `markdown`
writes their tables. The CPU suite's worker is bench/worker.py, the accelerator suite's
bench/accelerator_worker.py: each only says what its commands do.
"""

import argparse
import json
import math
import os
import select
import subprocess
import sys
import traceback

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Worker:
  """`python -m MODULE *ARGS` as a context manager; `ask` sends one command.

  With `timeout_s` a worker that gives no reply in time is killed (a hung compile or a
  stuck device must not hold the whole run). `start` reads its first line: a worker that
  fails to start is marked dead, and `safe_ask` answers for it with {"error": ...}."""

  def __init__(self, module, framework, args=(), env=None, timeout_s=None):
    self.framework, self.timeout_s = framework, timeout_s
    self.process = subprocess.Popen(
      [sys.executable, "-m", module, framework, *map(str, args)],
      stdin=subprocess.PIPE,
      stdout=subprocess.PIPE,
      text=True,
      cwd=REPO,
      env={**os.environ, **(env or {})},
    )
    self.info, self.dead = {}, False

  def start(self, check=False):
    """The worker's first reply (its versions and device), or {"error": ...} (with
    `check`: RuntimeError)."""
    try:
      self.info = self._read()
    except RuntimeError as error:
      if check:
        raise
      self.info, self.dead = {"error": str(error)}, True
    return self.info

  def _read(self):
    if self.timeout_s is not None:
      ready, _, _ = select.select([self.process.stdout], [], [], self.timeout_s)
      if not ready:
        self.process.kill()
        self.process.wait()
        raise RuntimeError(f"the {self.framework} worker gave no reply in {self.timeout_s:g} s")
    line = self.process.stdout.readline()
    if not line:
      raise RuntimeError(
        f"the {self.framework} worker exited (code {self.process.wait()}); its error is above"
      )
    return json.loads(line)

  def ask(self, command, check=False):
    """The reply to `command`; RuntimeError when the worker dies or times out, or with
    `check` when the command failed there."""
    self.process.stdin.write(json.dumps(command) + "\n")
    self.process.stdin.flush()
    reply = self._read()
    if check and "error" in reply:
      raise RuntimeError(f"the {self.framework} worker: {reply['error']}")
    return reply

  def safe_ask(self, command):
    """`ask`, with a dead worker's failure as an {"error": ...} reply."""
    if self.dead:
      return {"error": f"the {self.framework} worker is not running"}
    try:
      return self.ask(command)
    except (RuntimeError, OSError, ValueError) as error:
      self.dead = True
      return {"error": str(error)}

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


def serve(start):
  """The worker's side: `start()` -> (first reply, handle); then `handle(command)` answers
  each command until {"exit": ...}. A command that raises replies {"error": ...} and the
  worker goes on. Replies go to a private copy of stdout; whatever the libraries print
  (from their imports in `start` on) goes to stderr."""
  channel = os.fdopen(os.dup(1), "w")
  os.dup2(2, 1)
  sys.stdout = sys.stderr

  def reply(message):
    channel.write(json.dumps(message) + "\n")
    channel.flush()

  first, handle = start()
  reply(first)
  for line in sys.stdin:
    command = json.loads(line)
    if "exit" in command:
      break
    try:
      reply(handle(command))
    except Exception as error:  # pylint: disable=broad-except
      traceback.print_exc()
      reply({"error": f"{type(error).__name__}: {error}"[:2000]})


def alternate(run, sides, repeats):
  """`run(side)` -> a list of seconds, for each side `repeats` times in the order
  A B B A ... (neither side always runs right after the other). A side whose run raises
  RuntimeError stops there, its error kept. Returns ({side: seconds}, {side: error})."""
  times, errors = {side: [] for side in sides}, {}
  for i in range(repeats):
    for side in sides if i % 2 == 0 else sides[::-1]:
      if side not in errors:
        try:
          times[side] += run(side)
        except RuntimeError as error:
          errors[side] = str(error)
  return times, errors


def parser(prog, doc):
  """An argparse parser whose --help prints the module's docstring as written."""
  return argparse.ArgumentParser(
    prog=prog, description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
  )


def markdown(header, rows):
  """A markdown table of `header` (column names) and `rows` (lists of cells)."""
  lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
  return "\n".join(lines + ["| " + " | ".join(map(str, row)) + " |" for row in rows])


def number(value, digits=1):
  return "-" if value is None else f"{value:,.{digits}f}"


def megabytes(value):
  return "-" if value is None else f"{value / 2**20:,.0f}"


def geometric_mean(values):
  return math.exp(sum(map(math.log, values)) / len(values))


def loadavg():
  with open("/proc/loadavg") as f:
    return float(f.read().split()[0])
