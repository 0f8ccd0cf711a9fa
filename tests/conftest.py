"""Shared test setup: the tools' XLA flags and one persistent compilation cache.

Test modules and the command-line tools they start in subprocesses compile many
of the same functions; $POOLNET_JAX_CACHE (inherited by subprocesses) points
them all at one cache, kept under the system's temporary folder between runs.
"""

import os
import tempfile

from poolnet_jax import runtime

XLA_CACHE = os.path.join(tempfile.gettempdir(), "poolnet_jax_tests_xla")


def pytest_configure(config):
  del config
  os.environ.setdefault("POOLNET_JAX_CACHE", XLA_CACHE)
  runtime.apply_xla_defaults()  # as the command-line tools; subprocesses inherit it
  runtime.enable_compilation_cache()
