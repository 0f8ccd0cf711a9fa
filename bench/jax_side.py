"""The poolnet-jax side: the project's model, loss and optimizer, jitted as train.py does."""

import os
import time

import jax
import numpy as np

import poolnet_jax
from poolnet_jax import runtime
from poolnet_jax.models import layers
from poolnet_jax.train import state as state_lib
from poolnet_jax.train import step as step_lib
from bench import common

COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"
_compiles = []
jax.monitoring.register_event_duration_secs_listener(
    lambda event, seconds, **kw: _compiles.append(seconds) if event == COMPILE_EVENT else None)


def compile_count():
  """Backend compilations so far in this process."""
  return len(_compiles)


def load_model(model, directory):
  model, variables = poolnet_jax.load_torch_checkpoint(common.weights_path(directory, model))
  return model.clone(conv=layers.conv_impl(runtime.conv_from_environment())), variables


def _train_step(model):
  def step(state, batch):
    grad_fn = jax.value_and_grad(step_lib.compute_loss, argnums=1, has_aux=True)
    (_, metrics), grads = grad_fn(model, state.params, state.batch_stats, batch)
    return state.apply_gradients(grads), metrics
  return jax.jit(step, donate_argnums=(0,))


def make_runner(task, directory, with_compiled=False):
  """(callable doing one timed unit of `task`, seconds spent compiling it[, executable])."""
  model, variables = load_model(task.model, directory)
  images, labels = common.inputs(task)
  images = jax.device_put(images)
  if task.kind == "infer":
    variables = jax.device_put(variables)
    start = time.perf_counter()
    compiled = jax.jit(model.apply).lower(variables, images).compile()
    seconds = time.perf_counter() - start
    run = lambda: compiled(variables, images).block_until_ready()
    return (run, seconds, compiled) if with_compiled else (run, seconds)

  tx = state_lib.create_optimizer(variables["params"], common.LEARNING_RATE,
                                  common.WEIGHT_DECAY)
  holder = [jax.device_put(state_lib.TrainState.create(model.apply, variables, tx))]
  batch = {"image": images, "label": jax.device_put(labels)}
  start = time.perf_counter()
  compiled = _train_step(model).lower(holder[0], batch).compile()
  seconds = time.perf_counter() - start

  def train():
    holder[0], metrics = compiled(holder[0], batch)
    jax.block_until_ready(metrics)
  return (train, seconds, compiled) if with_compiled else (train, seconds)


def compile_train_step(task, directory):
  """Seconds to lower and compile the train step of `task` (from the persistent cache if warm)."""
  _, seconds = make_runner(task, directory)
  return seconds


def evaluation_compiles(model_name, directory, sizes):
  """(compilations, seconds) of a saliency pass over one image of each (H, W) in `sizes`.

  Runs `poolnet_jax.predict.Predictor`, the project's inference path.
  """
  from poolnet_jax import predict  # pylint: disable=g-import-not-at-top
  model, variables = load_model(model_name, directory)
  predictor = predict.Predictor(model, variables)
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
  return {"jax": jax.__version__, "jaxlib": jaxlib.__version__,
          "devices": [str(d) for d in jax.devices()], "xla_flags": os.environ.get("XLA_FLAGS", ""),
          "conv": str(layers.conv_impl(runtime.conv_from_environment()))}
