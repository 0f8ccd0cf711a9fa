"""Data parallelism: 1 device with the global batch == 4 simulated devices with a quarter each."""

import os
import subprocess
import sys

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  out = tmp_path_factory.mktemp("parallel")
  # The convolution algorithm does not change what is compared: XLA's compiles faster.
  env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4",
         "PYTHONPATH": os.pathsep.join([os.path.dirname(HERE), HERE]), "POOLNET_JAX_CACHE": "",
         "POOLNET_JAX_CONV": "xla"}
  subprocess.run([sys.executable, os.path.join(HERE, "parallel_worker.py"), str(out)],
                 check=True, env=env, timeout=900)
  return {name: dict(np.load(out / f"{name}.npz")) for name in ("pmap1", "pmap4", "shard_map4")}


@pytest.mark.parametrize("mode", ["pmap", "shard_map"])
def test_four_devices_equal_one_device_after_three_steps(mode, runs):
  one_device, multi = runs["pmap1"], dict(runs[f"{mode}4"])
  assert one_device.keys() == multi.keys()
  np.testing.assert_allclose(multi.pop("loss"), one_device["loss"], rtol=1e-4)  # a float32 sum
  for key, value in one_device.items():
    if key != "loss":
      np.testing.assert_allclose(multi[key], value, rtol=0, atol=TOLERANCE, err_msg=key)
  trained = [k for k in one_device if not k.startswith("initial/") and k != "loss"]
  moved = max(np.abs(one_device[k] - one_device[f"initial/{k}"]).max() for k in trained)
  assert moved > 1e-4  # the three steps did move the weights
