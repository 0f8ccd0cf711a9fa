"""Shared test setup: the tools' XLA flags (and -O0), one persistent compilation cache.

Test modules and the command-line tools they start in subprocesses compile many
of the same functions; $POOLNET_JAX_CACHE (inherited by subprocesses) points
them all at one cache, kept under the system's temporary folder between runs.
"""

import os
import tempfile

# The tests run on the CPU. The compile-only TPU and CUDA backends that bench.aot uses
# (requirements-aot.txt) would otherwise be started too, and fail, in every process.
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax
import pytest

import poolnet_jax
from poolnet_jax import runtime
from random_weights import TINY, random_variables

XLA_CACHE = os.path.join(tempfile.gettempdir(), "poolnet_jax_tests_xla")


# Tests compile far more than they compute (tiny models, many shapes): XLA:CPU's LLVM at
# -O0 compiles them about 25 % faster (tests/test_model.py, no cache: 98 s, 73 s at -O0)
# and the full-size parity tests lose nothing (73 s, 64 s). Runs they start inherit it.
TEST_XLA_FLAGS = "--xla_backend_optimization_level=0"


def pytest_configure(config):
  del config
  os.environ.setdefault("POOLNET_JAX_CACHE", XLA_CACHE)
  flags = os.environ.get("XLA_FLAGS", "")
  if TEST_XLA_FLAGS.split("=")[0] not in flags:
    os.environ["XLA_FLAGS"] = f"{flags} {TEST_XLA_FLAGS}".strip()
  runtime.apply_xla_defaults()  # as the command-line tools; subprocesses inherit it
  runtime.enable_compilation_cache()


@pytest.fixture(scope="module")
def tiny_saved(tmp_path_factory):
  """(model, variables, folder) of a tiny ResNet-50 PoolNet saved with save_pretrained."""
  model = poolnet_jax.create_model("resnet50", **TINY)
  variables = random_variables(model)
  directory = tmp_path_factory.mktemp("model")
  poolnet_jax.save_pretrained(directory, "resnet50", variables, **TINY)
  return model, variables, directory


@pytest.fixture(autouse=True, scope="module")
def _compiled_programs_freed_after_each_module():
  """Each test module's compiled programs are dropped when it ends (the persistent cache
  keeps them on disk), so a worker running many modules does not grow without bound."""
  yield
  jax.clear_caches()
