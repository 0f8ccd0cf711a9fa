"""Process-wide JAX settings shared by the command-line tools."""

import logging
import os

import jax
from jax._src import xla_bridge

DEFAULT_CACHE = os.path.join(os.path.expanduser("~"), ".cache", "poolnet_jax", "xla")


def enable_compilation_cache(directory=None):
  """Turns on JAX's persistent compilation cache, so a second run does not recompile.

  The directory comes from the argument, else $POOLNET_JAX_CACHE, else
  ~/.cache/poolnet_jax/xla; set $POOLNET_JAX_CACHE to "" to switch it off.
  """
  directory = directory if directory is not None else os.environ.get(
      "POOLNET_JAX_CACHE", DEFAULT_CACHE)
  if not directory:
    return None
  os.makedirs(directory, exist_ok=True)
  jax.config.update("jax_compilation_cache_dir", directory)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
  return directory


# Measured on a 2-core AMD EPYC (Zen 3, AVX2), see BENCHMARKS.md.
DEFAULT_XLA_FLAGS = ()
XLA_DEFAULTS_ENV = "POOLNET_JAX_XLA_DEFAULTS"


def apply_xla_defaults(flags=DEFAULT_XLA_FLAGS):
  """Appends the project's default XLA flags to $XLA_FLAGS; returns the flags added.

  Call it before the first JAX computation (XLA reads $XLA_FLAGS when its
  backends start). A flag the user already set in $XLA_FLAGS is left as it is.
  Opt out with POOLNET_JAX_XLA_DEFAULTS=0.
  """
  if os.environ.get(XLA_DEFAULTS_ENV, "1").strip().lower() in ("0", "false", "no", "off"):
    return []
  current = os.environ.get("XLA_FLAGS", "").split()
  names = {flag.split("=")[0] for flag in current}
  added = [flag for flag in flags if flag.split("=")[0] not in names]
  if not added:
    return []
  if xla_bridge.backends_are_initialized():
    logging.warning("JAX has already started: the default XLA flags %s are not applied", added)
    return []
  os.environ["XLA_FLAGS"] = " ".join(current + added)
  return added
