"""Process-wide JAX settings shared by the command-line tools."""

import os

import jax

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
