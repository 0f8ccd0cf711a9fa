"""Data parallelism: 1 device with the global batch == 4 simulated devices with a quarter
each (pmap, shard_map and jit), for a plain and a joint model, iter_size 2; under pmap
and shard_map the gradient programs hold no collective and the update holds the
all-reduce, under jit XLA all-reduces inside the gradient program instead."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import parallel_worker

HERE = os.path.dirname(os.path.abspath(__file__))
TOLERANCE = 1e-5
MODELS = ("resnet50", "resnet50_edge")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  out = tmp_path_factory.mktemp("parallel")
  env = {
    **os.environ,
    # Tiny models: compiling dominates, and LLVM at -O0 compiles ~40 % faster.
    "XLA_FLAGS": "--xla_force_host_platform_device_count=4 --xla_backend_optimization_level=0",
    "PYTHONPATH": os.pathsep.join([os.path.dirname(HERE), HERE]),
    "POOLNET_JAX_CACHE": "",
  }
  # One process per model, side by side: compiling is mostly single-threaded.
  workers = [
    subprocess.Popen(
      [sys.executable, os.path.join(HERE, "parallel_worker.py"), str(out), model], env=env
    )
    for model in MODELS
  ]
  assert [w.wait(timeout=1200) for w in workers] == [0, 0]
  results = {
    f"{m}_{mode}{n}": dict(np.load(out / f"{m}_{mode}{n}.npz"))
    for m in MODELS
    for mode, n in (parallel_worker.JOINT_RUNS if "edge" in m else parallel_worker.RUNS)
  }
  logs = [json.loads((out / f"{m}.json").read_text()) for m in MODELS]
  return results, {
    "all_reduces": logs[0]["all_reduces"],
    "programs": {**logs[0]["programs"], **logs[1]["programs"]},
  }


@pytest.mark.parametrize(
  "model,mode",
  [
    (m, mode)
    for m in MODELS
    for mode in ("pmap4", "shard_map4", "jit4")
    if (m, mode) != ("resnet50_edge", "shard_map4")
  ],
)
def test_every_mode_equals_one_device_pmap_after_three_updates(model, mode, runs):
  one_device, multi = runs[0][f"{model}_pmap1"], dict(runs[0][f"{model}_{mode}"])
  assert one_device.keys() == multi.keys()
  np.testing.assert_allclose(multi.pop("loss"), one_device["loss"], rtol=1e-4)  # a float32 sum
  for key, value in one_device.items():
    if key != "loss":
      np.testing.assert_allclose(multi[key], value, rtol=0, atol=TOLERANCE, err_msg=key)
  trained = [k for k in one_device if not k.startswith("initial/") and k != "loss"]
  moved = max(np.abs(one_device[k] - one_device[f"initial/{k}"]).max() for k in trained)
  assert moved > 1e-4  # the three updates did move the weights


@pytest.mark.parametrize("mode", ["pmap", "shard_map"])
def test_gradient_programs_have_no_collective_and_the_update_has_it(mode, runs):
  counts = runs[1]["all_reduces"][mode]
  assert counts["accumulate"] == 0
  assert counts["update"] >= 1  # XLA's combiner may merge or split the per-tensor means


def test_jit_all_reduces_in_the_gradient_program_and_not_in_the_update(runs):
  counts = runs[1]["all_reduces"]["jit"]
  assert counts["accumulate"] >= 1
  assert counts["update"] == 0


def test_one_program_per_task_and_shape(runs):
  """accumulate (one per task), update and read_metrics: compiled once each for one shape."""
  for name, programs in runs[1]["programs"].items():
    expected = {"jit(accumulate_saliency)": 1, "jit(update)": 1, "jit(read_metrics)": 1}
    if "edge" in name:
      expected["jit(accumulate_edge)"] = 1
    if name in (
      "resnet50_pmap4",
      "resnet50_shard_map4",
      "resnet50_jit4",
    ):  # the HLO check compiled two ahead
      expected = {"jit(read_metrics)": 1}
    if "pmap" in name:  # counted as pmap(<name>): jax.pmap calls its programs jit(_fun)
      expected = {k.replace("jit(", "pmap("): v for k, v in expected.items()}
    assert programs == expected, (name, programs)
