"""Two processes on 127.0.0.1 (jax.distributed, gloo) train like one process with both shards."""

import json
import os
import re
import socket
import subprocess
import sys

import numpy as np
import pytest

from test_train import ROOT, final_params

FINGERPRINT = re.compile(r"process (\d+): final parameter fingerprint (\S+)")


def _free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _train(workdir, data_dir, *flags):
  return subprocess.Popen(
    [
      sys.executable,
      "train.py",
      "--config",
      "poolnet_jax/configs/tiny.py",
      "--workdir",
      str(workdir),
      f"--config.data_dir={data_dir}",
      "--config.num_train_steps=2",
      "--config.batch_size=2",
      "--config.eval_every_steps=1000",
      "--config.checkpoint_every_steps=1000",
      "--alsologtostderr",
      *flags,
    ],
    # POOLNET_JAX_CONV=xla and LLVM at -O0: neither changes what is compared, both compile
    # faster (a tiny model's run is mostly compiling).
    cwd=ROOT,
    env={
      **os.environ,
      "PYTHONPATH": ROOT,
      "POOLNET_JAX_CACHE": "",
      "POOLNET_JAX_CONV": "xla",
      "XLA_FLAGS": f"{os.environ.get('XLA_FLAGS', '')} --xla_backend_optimization_level=0",
    },
    stdout=subprocess.PIPE,
    stderr=subprocess.STDOUT,
    text=True,
  )


def _two_hosts(workdir, data_dir, *flags):
  """Two training processes on 127.0.0.1; (processes, their outputs) once both ended."""
  address = f"127.0.0.1:{_free_port()}"
  hosts = [
    _train(
      workdir,
      data_dir,
      f"--coordinator_address={address}",
      "--num_processes=2",
      f"--process_id={i}",
      *flags,
    )
    for i in range(2)
  ]
  return hosts, [p.communicate(timeout=600)[0] for p in hosts]


def _output_tail(output, chars=8000):
  """The last `chars` of a process's output, without Python's list of loaded extension
  modules (an aborting interpreter prints it last, and it hides the error)."""
  return "\n".join(
    line for line in output.splitlines() if not line.startswith("Extension modules:")
  )[-chars:]


def _fingerprints(outputs):
  return dict(m for out in outputs for m in FINGERPRINT.findall(out))


@pytest.fixture(scope="module")
def one_process(tmp_path_factory):
  """The final parameters of the same run in one process (its own data_dir)."""
  root = tmp_path_factory.mktemp("single")
  single = _train(root / "run", root / "tfds")
  out = single.communicate(timeout=600)[0]
  assert single.returncode == 0, _output_tail(out)
  return final_params(root / "run")[1]


@pytest.mark.slow
@pytest.mark.parametrize("parallel", ["pmap", "jit"])  # shard_map: tests/test_parallel.py
def test_two_processes_equal_one_process(parallel, tmp_path, one_process):
  data_dir = tmp_path / "tfds"  # not built yet: the two processes must not build it twice
  hosts, outputs = _two_hosts(tmp_path / "multi", data_dir, f"--config.parallel={parallel}")
  for p, out in zip(hosts, outputs):  # no retry: an abort (a signal) fails
    assert p.returncode == 0, _output_tail(out)
  builds = [out.count("building TFDS dataset synthetic_salient/tiny") for out in outputs]
  assert sum(builds) == 1, builds  # once, by process 0
  # Both waited for the other and left the cluster together (cli/train.py leave_cluster).
  assert [out.count(f"process {i} left the cluster") for i, out in enumerate(outputs)] == [1, 1]
  # Validation (at the last update) and the best model: process 0 alone, once.
  assert [out.count("validation at update 2") for out in outputs] == [1, 0]
  assert [out.count("best model so far") for out in outputs] == [1, 0]
  assert json.loads((tmp_path / "multi" / "best" / "poolnet.json").read_text())["model"]["variant"]
  prints = _fingerprints(outputs)
  assert set(prints) == {"0", "1"} and prints["0"] == prints["1"]  # replicas agree
  step, multi = final_params(tmp_path / "multi")
  assert step == 2
  one = one_process
  assert multi.keys() == one.keys()
  for key in one:
    np.testing.assert_allclose(multi[key], one[key], rtol=0, atol=1e-5, err_msg=key)
