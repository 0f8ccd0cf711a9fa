"""The JAX side of `python -m bench.accelerator`: the project's model and train step, one device.

The same step as bench/jax_side.py (`compute_loss`, `create_optimizer`, `TrainState`,
jitted with the state donated), compiled with `.lower().compile()` per item.
"""

import contextlib
import dataclasses
import importlib.metadata
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

import poolnet_jax
from poolnet_jax import runtime
from poolnet_jax.models import layers
from bench import aot_hlo, common
from bench import jax_side

MODEL = "resnet50"
PRECISIONS = ("float32", "float32-highest", "bfloat16")
_loaded = {}  # "variables", "overrides", "warmups", "conv": set by prepare()


def make_model(dtype, resize_conv, remat=False):
  """The JAX model: the one place that says how its convolutions are computed (`conv`
  and `resize_conv` None: the backend's default, `layers.conv_impl()`)."""
  return poolnet_jax.create_model(
    MODEL,
    dtype=dtype,
    conv=_loaded.get("conv"),
    resize_conv=resize_conv,
    remat=remat,
    **_loaded.get("overrides", {}),
  )


def default_resize_conv():
  """What `resize_conv=None` means here."""
  return layers.conv_impl(_loaded.get("conv")).resize_conv


def setup():
  """XLA settings before the backend starts; versions and devices for the report."""
  runtime.apply_xla_defaults()  # on the CPU only: an accelerator's XLA may not know the flag
  # Compile times are measured cold unless $POOLNET_JAX_CACHE asks for the persistent
  # cache (the tests set it: there they are cache reads from the second run on).
  cache = runtime.enable_compilation_cache() if os.environ.get("POOLNET_JAX_CACHE") else None
  import jaxlib  # pylint: disable=import-outside-toplevel

  device = jax.devices()[0]
  return {
    "jax": jax.__version__,
    "jaxlib": jaxlib.__version__,
    "flax": _version("flax"),
    "optax": _version("optax"),
    "backend": jax.default_backend(),
    "device": str(device),
    "device_kind": device.device_kind,
    "device_count": jax.device_count(),
    "xla_flags": os.environ.get("XLA_FLAGS", ""),
    "preallocate": os.environ.get("XLA_PYTHON_CLIENT_PREALLOCATE"),
    "conv_default": str(layers.conv_impl()),
    "compilation_cache": cache,
  }


def _version(name):
  try:
    return importlib.metadata.version(name)
  except importlib.metadata.PackageNotFoundError:
    return None


def prepare(directory, overrides, warmups, conv=None):
  """Converts the torch worker's .pth (checked against the model's shapes)."""
  overrides = {k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()}
  variables = jax_side.load_variables(MODEL, directory, overrides)
  _loaded.update(variables=variables, overrides=overrides, warmups=warmups, conv=conv)
  count = sum(np.size(x) for x in jax.tree_util.tree_leaves(variables))
  return {"conv": str(layers.conv_impl(conv)), "parameters": int(count)}


def normalize(item):
  """`item` with resize_conv=None resolved to the default (so both share one compile)."""
  if item.precision not in PRECISIONS:
    raise ValueError(f"JAX precision {item.precision!r}; expected one of {PRECISIONS}")
  if item.option not in (None, "remat"):
    raise ValueError(f"JAX option {item.option!r}; expected None or 'remat'")
  if item.resize_conv is None:
    return dataclasses.replace(item, resize_conv=default_resize_conv())
  return item


def reset_peak(runner):
  del runner  # JAX's peak_bytes_in_use cannot be reset: it is the process's running peak


class Runner:
  """One compiled inference or train step; `call()` returns when the device is done."""

  def __init__(self, item):
    dtype = jnp.bfloat16 if item.precision == "bfloat16" else jnp.float32
    model = make_model(dtype, item.resize_conv, remat=item.option == "remat")
    images, labels = common.inputs(item.task())
    self.device = jax.devices()[0]
    put = lambda tree: jax.device_put(tree, self.device)
    variables = _loaded["variables"]
    precision = (
      jax.default_matmul_precision("highest")
      if item.precision == "float32-highest"
      else contextlib.nullcontext()
    )
    start = time.perf_counter()
    with precision:
      if item.kind == "infer":
        self.args = [put(variables), put(images)]
        self.compiled = jax.jit(model.apply).lower(*self.args).compile()
      else:
        self.step = jax_side.TrainStep(model, variables, item.task(), self.device)
        self.compiled = self.step.compiled["accumulate_saliency"]
    compile_s = time.perf_counter() - start
    self.kind, self.out = item.kind, None
    start = time.perf_counter()
    self.call()
    first_call_s = time.perf_counter() - start
    for _ in range(_loaded["warmups"]):
      start = time.perf_counter()
      self.call()
    self.info = {
      "compile_s": compile_s,
      "first_call_s": first_call_s,
      "warm_s": time.perf_counter() - start,
      "resize_conv": item.resize_conv,
    }

  def call(self):
    if self.kind == "infer":
      self.out = jax.block_until_ready(self.compiled(*self.args))
    else:
      self.step()

  def logits(self):
    if self.kind != "infer":
      raise ValueError("logits come from inference runners only")
    return np.asarray(self.out, np.float32)


def build(item):
  return Runner(item)


def _executable_bytes(compiled):
  """Arguments + outputs + temporaries of one executable (XLA's memory analysis), or None."""
  try:
    return aot_hlo.memory(compiled)["total"]
  except Exception:  # pylint: disable=broad-except
    return None


def memory(runner, runners):
  del runners
  stats = runner.device.memory_stats() or {}
  peak = stats.get("peak_bytes_in_use")
  return {
    "executable_bytes": _executable_bytes(runner.compiled),
    "process_peak_bytes": None if peak is None else int(peak),
  }
