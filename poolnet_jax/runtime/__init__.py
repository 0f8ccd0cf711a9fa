"""Process-wide JAX settings shared by the command-line tools."""

import importlib.metadata
import os

import jax

DEFAULT_CACHE = os.path.join(os.path.expanduser("~"), ".cache", "poolnet_jax", "xla")
# XLA flags that train.py, predict, evaluate, the benchmark and the tests add to $XLA_FLAGS
# (measured, BENCHMARKS.md).
DEFAULT_XLA_FLAGS = {
  # No YNNPACK fusions on CPU: XLA's own convolutions and matrix products are faster
  # for PoolNet, above all their kernel gradients (1.2x at batch 1, 4x at batch 8).
  "--xla_cpu_experimental_ynn_fusion_type": "",
}


ACCELERATOR_PLUGINS = ("jax-cuda", "jax-rocm", "libtpu")  # distributions' name prefixes


def accelerator_plugin_installed():
  """Whether a GPU or TPU backend for JAX is installed (it may still find no chip)."""
  for dist in importlib.metadata.distributions():
    name = (dist.metadata["Name"] or "").lower().replace("_", "-")
    if name.startswith(ACCELERATOR_PLUGINS):
      return True
  return False


def starts_on_cpu(environ=os.environ, plugin_installed=None):
  """Whether JAX will run on the CPU, told without starting a backend: $JAX_PLATFORMS's
  first entry, or, when it is unset, no accelerator plugin installed."""
  platforms = environ.get("JAX_PLATFORMS", "")
  if platforms:
    return platforms.split(",")[0].strip().lower() == "cpu"
  if plugin_installed is None:
    plugin_installed = accelerator_plugin_installed()
  return not plugin_installed


def apply_xla_defaults(environ=os.environ, plugin_installed=None):
  """Adds DEFAULT_XLA_FLAGS to $XLA_FLAGS when JAX will run on the CPU; returns the value.

  The flags are XLA:CPU's, which a GPU or TPU backend's XLA may refuse, so nothing is
  added unless `starts_on_cpu` (an installed accelerator plugin without $JAX_PLATFORMS
  counts as an accelerator). A flag already in $XLA_FLAGS keeps the user's value, and
  POOLNET_JAX_XLA_DEFAULTS=0 adds none. XLA reads $XLA_FLAGS once, when JAX starts its
  first backend: call this before any JAX computation.
  """
  flags = environ.get("XLA_FLAGS", "")
  on = environ.get("POOLNET_JAX_XLA_DEFAULTS", "1") != "0"
  if on and starts_on_cpu(environ, plugin_installed):
    present = {flag.split("=")[0] for flag in flags.split()}
    added = [f"{name}={value}" for name, value in DEFAULT_XLA_FLAGS.items() if name not in present]
    flags = " ".join([flags] + added).strip()
    environ["XLA_FLAGS"] = flags
  return flags


def conv_from_environment(environ=os.environ):
  """create_model's `conv` named by $POOLNET_JAX_CONV ("fast" or "xla"), or None (the
  backend's default). For entry points: modules never read the environment."""
  return environ.get("POOLNET_JAX_CONV", "") or None


def with_conv_from_environment(model):
  """`model` computing its convolutions as $POOLNET_JAX_CONV says, if it is set."""
  conv = conv_from_environment()
  if not conv:
    return model
  from poolnet_jax.models import layers  # pylint: disable=import-outside-toplevel

  return model.clone(conv=layers.conv_impl(conv))


# jax.default_matmul_precision's names: "default" lets GPUs use TF32 and TPUs bf16 passes
# for float32 matrix products and convolutions; "highest" is true float32.
PRECISIONS = ("default", "high", "highest", "bfloat16", "tensorfloat32", "float32")


def enable_compilation_cache(directory=None):
  """Turns on JAX's persistent compilation cache, so a second run does not recompile.

  The directory comes from the argument, else $POOLNET_JAX_CACHE, else
  ~/.cache/poolnet_jax/xla; set $POOLNET_JAX_CACHE to "" to switch it off.
  """
  directory = (
    directory if directory is not None else os.environ.get("POOLNET_JAX_CACHE", DEFAULT_CACHE)
  )
  if not directory:
    return None
  os.makedirs(directory, exist_ok=True)
  jax.config.update("jax_compilation_cache_dir", directory)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
  return directory
