"""The poolnet-jax side: the project's model, loss and optimizer, jitted as train.py does."""

import os
import time

import jax
import numpy as np

import poolnet_jax
from poolnet_jax import runtime
from poolnet_jax.models import layers
from poolnet_jax.weights.torch_io import mapping
from poolnet_jax.weights.torch_io.pth import read_state_dict
from poolnet_jax.train import step as step_lib
from poolnet_jax.train import parallel as parallel_lib
from bench import common

COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"
_compiles = []
jax.monitoring.register_event_duration_secs_listener(
  lambda event, seconds, **kw: _compiles.append(seconds) if event == COMPILE_EVENT else None
)


def compile_count():
  """Backend compilations so far in this process."""
  return len(_compiles)


def load_variables(model, directory, overrides=None):
  """The torch side's .pth of `model` as Flax variables: a full-size variant by its names,
  or cut to `overrides` (width, stages), checked against that model's shapes."""
  path = common.weights_path(directory, model)
  if not overrides:
    return poolnet_jax.load_torch_checkpoint(path, model)[1]
  state_dict = read_state_dict(path)
  problems = mapping.mismatch(state_dict, mapping.expected_state_dict(model, **overrides))
  if any(problems):
    raise mapping.CheckpointMismatch(f"{path} does not fit {model} {overrides}: {problems}")
  return mapping.unflatten(state_dict)


def load_model(model, directory, tiny=False):
  overrides = common.TINY if tiny else {}
  variables = load_variables(model, directory, overrides)
  conv = layers.conv_impl(runtime.conv_from_environment())
  return poolnet_jax.create_model(model, conv=conv, **overrides), variables


class TrainStep:
  """The product's train step on one device: `parallel.make_trainer` (jit, iter_size 1), the
  gradient program then the update program, on uint8 inputs; compiled ahead of time."""

  def __init__(self, model, variables, task, device=None):
    images, labels = common.uint8_inputs(task)
    tx = step_lib.create_optimizer(variables["params"], common.LEARNING_RATE, common.WEIGHT_DECAY)
    self.trainer = parallel_lib.make_trainer(model, 1, "jit", devices=[device or jax.devices()[0]])
    self.state = self.trainer.replicate(step_lib.TrainState.create(variables, tx))
    self.sums = self.trainer.init_sums(self.state)
    self.batch = self.trainer.put({"image": images, "label": labels})
    start = time.perf_counter()
    self.compiled = self.trainer.compile(self.state, self.sums, self.batch)
    self.compile_s = time.perf_counter() - start

  def __call__(self):
    self.sums = self.trainer.call(self.state, self.sums, self.batch)
    self.state, self.sums = self.trainer.update(self.state, self.sums)
    jax.block_until_ready(self.state.params)


def make_runner(task, directory, with_compiled=False):
  """(callable doing one timed unit of `task`, seconds spent compiling it[, executable])."""
  model, variables = load_model(task.model, directory, task.tiny)
  images, labels = common.inputs(task)
  images = jax.device_put(images)
  if task.kind == "infer":
    variables = jax.device_put(variables)
    start = time.perf_counter()
    compiled = jax.jit(model.apply).lower(variables, images).compile()
    seconds = time.perf_counter() - start
    run = lambda: compiled(variables, images).block_until_ready()
    return (run, seconds, compiled) if with_compiled else (run, seconds)

  step = TrainStep(model, variables, task)
  compiled = step.compiled["accumulate_saliency"]
  return (step, step.compile_s, compiled) if with_compiled else (step, step.compile_s)


def compile_train_step(task, directory):
  """Seconds to lower and compile the train step of `task` (from the persistent cache if warm)."""
  _, seconds = make_runner(task, directory)
  return seconds


def evaluation_compiles(model_name, directory, sizes):
  """(compilations, seconds) of a saliency pass over one image of each (H, W) in `sizes`.

  Runs `poolnet_jax.inference.predictor.Predictor`, the project's inference path.
  """
  from poolnet_jax.inference import predictor as predictor_lib  # pylint: disable=g-import-not-at-top

  model, variables = load_model(model_name, directory)
  predictor = predictor_lib.Predictor(model, variables)
  rng = np.random.default_rng(0)
  before, start = compile_count(), time.perf_counter()
  for h, w in sizes:
    predictor.saliency(rng.integers(0, 256, (1, h, w, 3), dtype=np.uint8))
  return compile_count() - before, time.perf_counter() - start


def setup(threads, cache_dir):
  """The persistent compilation cache in `cache_dir`; versions and settings for the report."""
  del threads  # XLA's pool has one thread per CPU of the process: the worker pins them
  runtime.apply_xla_defaults()
  runtime.enable_compilation_cache(cache_dir)
  import jaxlib  # pylint: disable=g-import-not-at-top

  return {
    "jax": jax.__version__,
    "jaxlib": jaxlib.__version__,
    "devices": [str(d) for d in jax.devices()],
    "xla_flags": os.environ.get("XLA_FLAGS", ""),
    "conv": str(layers.conv_impl(runtime.conv_from_environment())),
  }
