"""bench/harness.py: the alternation both benchmark suites time by, and their tables."""

import json
import re
import statistics
import subprocess
import sys

import pytest

from bench import harness


def test_alternate_runs_a_b_b_a_and_keeps_a_failed_side_out():
  calls = []

  def run(side):
    calls.append(side)
    if side == "b" and calls.count("b") == 2:
      raise RuntimeError("out of memory")
    return [float(len(calls))]

  times, errors = harness.alternate(run, ("a", "b"), 4)
  assert calls == ["a", "b", "b", "a", "a", "a"]  # b fails on its second call, then sits out
  assert times == {"a": [1.0, 4.0, 5.0, 6.0], "b": [2.0]}
  assert errors == {"b": "out of memory"}
  only, none = harness.alternate(lambda side: [0.5], (0,), 3)
  assert only == {0: [0.5, 0.5, 0.5]} and none == {}


def test_markdown_table_and_numbers():
  table = harness.markdown(("what", "images/s"), [["inference", harness.number(1234.5)]])
  assert table.splitlines() == ["| what | images/s |", "| --- | --- |", "| inference | 1,234.5 |"]
  assert harness.number(None) == harness.megabytes(None) == "-"
  assert harness.megabytes(3 * 2**20) == "3"
  assert harness.geometric_mean([1.0, 4.0]) == pytest.approx(2.0)


@pytest.mark.slow
def test_cpu_suite_tiny_run_end_to_end(tmp_path):
  """`python -m bench --tiny`: both workers built from one weights file, timed in turn."""
  out = tmp_path / "bench.json"
  done = subprocess.run(
    [sys.executable, "-m", "bench", "--tiny", "--json", str(out)],
    cwd=harness.REPO,
    capture_output=True,
    text=True,
    timeout=600,
    check=False,
  )
  assert done.returncode == 0, done.stderr[-3000:]
  last = done.stdout.strip().splitlines()[-1]
  assert re.fullmatch(r"jax/torch inference ratio=\d+\.\d\d train ratio=\d+\.\d\d", last), last
  results = json.loads(out.read_text())
  assert results["tiny"] and [r["label"] for r in results["rows"]] == [
    "inference resnet50 (tiny) 1x112x144",
    "train step resnet50 (tiny) 1x112x144",
  ]
  for row in results["rows"]:
    assert {name: len(t) for name, t in row["times"].items()} == {"jax": 2, "torch": 2}
    medians = {name: statistics.median(t) for name, t in row["times"].items()}
    assert row["ratio"] == pytest.approx(medians["torch"] / medians["jax"])
  infer = results["rows"][0]["ratio"]
  assert f"inference ratio={infer:.2f}" in last  # one inference model: its own ratio
