"""`python -m bench.accelerator --tiny`: the GPU check's own command, run on this CPU.

The command must work here before any GPU time is spent on it: every section measured
with finite numbers, JAX's float32 maps equal to the PyTorch reference's (independent
model, same converted weights), the summary line in its fixed format; and its modules
must import nothing the GPU machine lacks.
"""

import json
import math
import os
import re
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODULES = (
  "bench.accelerator",
  "bench.accelerator_jax",
  "bench.accelerator_torch",
  "bench.accelerator_worker",
  "bench.accelerator_report",
  "bench.harness",
)
ABSENT_ON_GPU_MACHINE = (
  "tensorflow_datasets",
  "grain",
  "array_record",
  "pysodmetrics",
  "ml_collections",
  "tensorboardX",
)
LAST_LINE = re.compile(r"^gpu jax/torch inference ratio=(\d+\.\d\d) train ratio=(\d+\.\d\d)$")


def _run(args, timeout):
  return subprocess.run(
    [sys.executable, "-m", "bench.accelerator", *args],
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=timeout,
  )


def _positive(value):
  return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def _check_side(side, framework):
  assert "error" not in side, side
  assert side["framework"] == framework
  assert len(side["times"]) == 2 and all(_positive(t) for t in side["times"])
  assert _positive(side["median_s"]) and _positive(side["images_per_s"])
  assert _positive(side["first_call_s"])
  if framework == "jax":
    assert _positive(side["compile_s"]) and _positive(side["executable_bytes"])


@pytest.mark.slow
def test_tiny_run_measures_every_section(tmp_path):
  path = tmp_path / "accelerator.json"
  done = _run(["--tiny", "--json", str(path)], timeout=420)
  assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
  results = json.loads(path.read_text())
  assert results["tiny"] and results["platform"] == "cpu" and not results["skipped"]

  for section in ("inference", "train"):
    precisions = {(r["shape"], r["precision"]) for r in results[section]}
    assert ("batched", "bfloat16") in precisions
    for row in results[section]:
      _check_side(row["a"], "jax")
      _check_side(row["b"], "torch")
      assert row["ratio"] == pytest.approx(row["a"]["images_per_s"] / row["b"]["images_per_s"])
  assert {r["precision"] for r in results["inference"]} == {
    "bfloat16",
    "float32, JAX default precision / PyTorch TF32",
    "float32, JAX highest precision / PyTorch no TF32",
  }
  assert [(r["shape"], r["precision"]) for r in results["train"]] == [("batched", "bfloat16")]
  assert {(r["kind"], r["batch"], r["height"], r["width"]) for r in results["inference"]} == {
    ("infer", 2, 112, 112),
    ("infer", 1, 112, 144),
  }

  assert [(r["kind"], r["shape"]) for r in results["resize_conv"]] == [("infer", "batched")]
  for row in results["resize_conv"]:
    _check_side(row["a"], "jax")
    _check_side(row["b"], "jax")
    assert (row["a"]["resize_conv"], row["b"]["resize_conv"]) == (True, False)

  [remat] = results["remat"]
  _check_side(remat["a"], "jax")
  _check_side(remat["b"], "jax")
  assert (remat["kind"], remat["a"]["option"], remat["b"]["option"]) == ("train", "remat", None)
  [compiled] = results["torch_compile"]
  _check_side(compiled["a"], "jax")
  _check_side(compiled["b"], "torch")
  assert (compiled["kind"], compiled["b"]["option"]) == ("infer", "compile")
  assert "torch.compile" in done.stdout and "remat images/s" in done.stdout

  parity = results["parity"]["against"]
  assert parity["JAX float32, highest precision"]["rel_l2"] < 1e-4
  assert parity["JAX float32, highest precision"]["max_abs_map"] < 1e-4
  assert parity["JAX float32, default precision"]["rel_l2"] < 1e-4  # CPU: no TF32
  # bfloat16 is far from float32, but not much further than PyTorch's own autocast.
  bf16, torch_bf16 = parity["JAX bfloat16"], parity["PyTorch bfloat16 (autocast)"]
  assert 1e-4 < bf16["rel_l2"] < 3 * torch_bf16["rel_l2"]

  inference, train = (_row(results, s)["ratio"] for s in ("inference", "train"))
  assert results["summary"] == {"inference_ratio": inference, "train_ratio": train}
  assert len(results["goals"]) == 5 and all(g["value"] is not None for g in results["goals"])
  match = LAST_LINE.match(done.stdout.strip().splitlines()[-1])
  assert match, done.stdout[-500:]
  assert [float(x) for x in match.groups()] == [round(inference, 2), round(train, 2)]


def _row(results, section):
  return next(
    r for r in results[section] if r["shape"] == "batched" and r["precision"] == "bfloat16"
  )


def test_budget_skips_items_with_a_note(tmp_path):
  """With no time left nothing is measured: each item is skipped with a note, and the
  summary line says the ratios are missing instead of making them up."""
  path = tmp_path / "accelerator.json"
  done = _run(["--tiny", "--budget-s", "0", "--json", str(path)], timeout=120)
  assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
  results = json.loads(path.read_text())
  assert len(results["skipped"]) == 9 and all("skipped" in n for n in results["skipped"])
  assert results["inference"] == results["train"] == results["resize_conv"] == []
  assert results["summary"] == {"inference_ratio": None, "train_ratio": None}
  assert done.stdout.strip().splitlines()[-1] == "gpu jax/torch inference ratio=nan train ratio=nan"


def test_imports_nothing_the_gpu_machine_lacks():
  code = (
    f"import json, sys; import {', '.join(MODULES)}; print(json.dumps(sorted("
    f"m for m in sys.modules if m.split('.')[0] in {ABSENT_ON_GPU_MACHINE!r})))"
  )
  done = subprocess.run(
    [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120
  )
  assert done.returncode == 0, done.stderr[-2000:]
  assert json.loads(done.stdout.strip().splitlines()[-1]) == []


def test_a_full_run_stops_at_start_without_a_gpu(tmp_path):
  """Only --tiny runs on a CPU: the full run would take hours there and measure nothing
  it claims to."""
  done = _run(["--json", str(tmp_path / "a.json")], timeout=120)
  assert done.returncode == 2 and not (tmp_path / "a.json").exists()
  lines = done.stderr.strip().splitlines()
  assert lines[-1].startswith("bench.accelerator measures a GPU: JAX's backend is cpu")
  assert "PyTorch's device is cpu" in lines[-1] and "--tiny" in lines[-1]


def test_a_worker_that_does_not_answer_is_killed():
  from bench import harness  # pylint: disable=import-outside-toplevel

  env = {"JAX_PLATFORMS": "cpu"}
  worker = harness.Worker("bench.accelerator_worker", "torch", env=env, timeout_s=120)
  assert worker.start().get("ready") == "torch"
  worker.timeout_s = 0.5  # preparing the weights takes seconds
  reply = worker.safe_ask({"prepare": {"directory": "/tmp", "overrides": {}, "warmups": 0}})
  assert reply == {"error": "the torch worker gave no reply in 0.5 s"}
  assert worker.dead and worker.process.poll() is not None
  assert worker.safe_ask({"memory": "x"}) == {"error": "the torch worker is not running"}
