"""bench/harness.py: the alternation both benchmark suites time by, and their tables."""

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
