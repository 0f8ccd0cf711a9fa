"""train_and_evaluate: the training recipe, from config to checkpoints, logs and the best model.

A "step" here is one optimizer update; with the original's `iter_size` one
update takes `iter_size` calls of the gradient programs, then one update
program (train/step.py, mapped over devices by train/parallel.py). The host reads the
devices only at log, validation and checkpoint steps. Validation (metrics, a prediction
grid) and the best model kept (`BestModel`) are here too.
"""

import json
import os
import signal
import time

from absl import logging
import jax
from jax.experimental import multihost_utils
import numpy as np
import tqdm

from poolnet_jax.data import pipeline
from poolnet_jax.inference import metrics as metrics_lib
from poolnet_jax.inference import predictor as predictor_lib, plots
from poolnet_jax.runtime import compilation
from poolnet_jax.train import checkpoints as checkpoints_lib
from poolnet_jax.train import logs as logs_lib
from poolnet_jax.train import parallel as parallel_lib
from poolnet_jax.train import profile as profile_lib
from poolnet_jax.train import recipe
from poolnet_jax.train import step as step_lib
from poolnet_jax.train import warmup
from poolnet_jax.weights import pretrained


class NonFiniteLoss(RuntimeError):
  """The loss became NaN or infinite; the last good checkpoint is kept."""


class _Preemption:
  """Turns SIGTERM into a flag the loop checks between updates."""

  def __init__(self):
    self.requested = False
    self._previous = signal.signal(signal.SIGTERM, self._handle)

  def _handle(self, signum, frame):
    del signum, frame
    logging.warning("SIGTERM: saving a checkpoint and stopping")
    self.requested = True

  def restore(self):
    signal.signal(signal.SIGTERM, self._previous)


def make_train_iterator(config, model):
  """The training batches: saliency only, or saliency + edge for the joint models."""
  kwargs = dict(
    mode=config.data.mode,
    batch_size=config.batch_size,
    size=tuple(config.data.size),
    buckets=tuple(map(tuple, config.data.buckets)),
    flip=config.data.flip,
    seed=config.seed,
    worker_count=config.data.worker_count,
    read_threads=config.data.read_threads,
    prefetch=config.data.prefetch,
    min_size=model.min_input_size(),
    native_multiple=config.data.native_multiple,
    native_max_rescale=config.data.native_max_rescale,
    plan_sizes=warmup.enabled(config.compile_ahead, config.data.mode),
  )
  saliency = recipe.data_source(config, config.dataset, config.train_split)
  if not model.edge:
    return pipeline.train_iterator(saliency, label_key="mask", **kwargs), len(saliency)
  edges = recipe.data_source(config, config.edge_dataset, "train")
  return pipeline.joint_iterator(saliency, edges, **kwargs), len(saliency)


def create_train_state(config, model, num_train_images):
  """TrainState on the host, with the original's optimizer and schedule."""
  num_updates, decays = recipe.schedule_steps(config, num_train_images)
  variables = recipe.initial_variables(config, model, jax.random.PRNGKey(config.seed))
  tx, schedule = recipe.optimizer(config, variables["params"], num_updates, decays)
  return step_lib.TrainState.create(variables, tx), num_updates, schedule


def fingerprint(params):
  """Sum and sum of squares of all parameters: equal on every replica and host."""
  leaves = [np.asarray(x, np.float64) for x in jax.tree_util.tree_leaves(jax.device_get(params))]
  return f"{sum(x.sum() for x in leaves):.10e}/{sum((x * x).sum() for x in leaves):.10e}"


def _images_per_update(config, model):
  return config.batch_size * config.iter_size * (2 if model.edge else 1)


def _check_finite(trainer, state, update, checkpoints, workdir, loss=None):
  """Raises NonFiniteLoss if an update so far saw a non-finite loss or gradient (such
  updates are skipped on the device, so the state is the last good one)."""
  skipped = trainer.nonfinite_updates(state)
  if skipped or (loss is not None and not np.isfinite(loss)):
    raise NonFiniteLoss(
      f"loss is not finite ({skipped} update(s) up to update {update} had a NaN or infinite "
      f"loss or gradient; last logged loss {loss}); stopping. The last good checkpoint "
      f"(update {checkpoints.latest_step()}) is kept in {workdir}/checkpoints."
    )


def _validate(config, model, state, eval_source, writer, update):
  """Validation on process 0 alone; every process gets its results."""
  results = {}
  if jax.process_index() == 0:
    results = validate(
      model,
      state.variables,
      eval_source,
      config.eval_max_images,
      size=tuple(config.eval_size) or None,
      writer=writer,
      step=update,
    )
  if jax.process_count() > 1:
    template = {key: np.float64(results.get(key, 0.0)) for key in metrics_lib.KEYS}
    results = {k: float(v) for k, v in multihost_utils.broadcast_one_to_all(template).items()}
  return results


def train_and_evaluate(config, workdir):
  """Trains `config` in `workdir`, resuming from its latest checkpoint if there is one.

  Returns the last validation metrics (a dict, empty if none ran).
  """
  recipe.check(config)
  compiled_before = compilation.snapshot()  # every program of the run is counted from here
  workdir = os.path.abspath(workdir)
  model = recipe.create_model_from_config(config)
  train_iter, num_train_images = make_train_iterator(config, model)
  state, num_updates, schedule = create_train_state(config, model, num_train_images)
  checkpoints = checkpoints_lib.Checkpoints(
    os.path.join(workdir, "checkpoints"), keep=config.keep_checkpoints
  )
  if checkpoints.latest_step() is not None:
    state, data_state = checkpoints.restore(state)
    train_iter.set_state(data_state)
    logging.info("resumed from update %d", int(state.step))
  eval_source = recipe.data_source(config, config.eval_dataset, config.eval_split)
  best = BestModel(os.path.join(workdir, "best"), recipe.model_spec(config))
  writer = logs_lib.MetricWriter(workdir)
  if int(state.step):  # resumed: the rows logged after its checkpoint are about to be redone
    writer.truncate_after(int(state.step))
  trainer = parallel_lib.make_trainer(model, config.iter_size, config.parallel)
  update = int(state.step)
  state = trainer.replicate(state)
  sums = trainer.init_sums(state)
  batches = parallel_lib.DevicePrefetch(train_iter, trainer.put, config.data.prefetch_to_device)
  ahead = warmup.from_config(
    config, trainer, train_iter, recipe.updates_per_epoch(config, num_train_images), num_updates
  )
  trace = profile_lib.UpdateTrace(
    config.profile_steps,
    os.path.join(workdir, "tensorboard"),
    enabled=jax.process_index() == 0,
  )
  preemption = _Preemption()
  results = {}
  try:
    bar = tqdm.tqdm(
      total=num_updates,
      initial=update,
      desc="train",
      unit="update",
      disable=jax.process_index() != 0,
      dynamic_ncols=True,
    )
    window_start, window_updates = time.time(), 0
    while update < num_updates and not preemption.requested:
      if ahead is not None:  # the epoch's new step shapes, before its first update
        ahead.before_update(update, state, sums, batches.get_state())
      with trace.step(update + 1):
        for _ in range(config.iter_size):
          sums = trainer.call(state, sums, next(batches))
        state, sums = trainer.update(state, sums)
      update += 1
      trace.after(update, state)
      window_updates += 1
      bar.update(1)
      last = update == num_updates
      if update % config.log_every_steps == 0 or last:
        sums, metrics = trainer.read_metrics(sums)  # the only host read between log steps
        _check_finite(trainer, state, update, checkpoints, workdir, metrics["loss"])
        images_per_sec = (
          window_updates * _images_per_update(config, model) / max(time.time() - window_start, 1e-9)
        )
        bar.set_postfix(loss=f"{metrics['loss']:.4g}", img_s=f"{images_per_sec:.1f}")
        compiled = compilation.snapshot().minus(compiled_before)  # cumulative, this run
        writer.scalars(
          update,
          {
            **metrics,
            "images_per_sec": images_per_sec,
            "learning_rate": float(schedule(update - 1)),
            "compilations": compiled.compilations,
            "compile_seconds": compiled.compile_seconds,
          },
          prefix="train/",
        )
        window_start, window_updates = time.time(), 0
      if update % config.eval_every_steps == 0 or last:
        _check_finite(trainer, state, update, checkpoints, workdir)
        host_state = trainer.unreplicate(state)
        results = _validate(config, model, host_state, eval_source, writer, update)
        best.update(update, results, host_state.variables)
      if update % config.checkpoint_every_steps == 0 or last or preemption.requested:
        _check_finite(trainer, state, update, checkpoints, workdir)  # never save a bad state
        checkpoints.save(update, trainer.unreplicate(state), batches.get_state(), force=True)
    bar.close()
    logging.info("compilation: %s", compilation.summary(since=compiled_before))
    logging.info(
      "process %d: final parameter fingerprint %s",
      jax.process_index(),
      fingerprint(trainer.unreplicate(state).params),
    )
  finally:
    trace.stop()
    checkpoints.wait()
    checkpoints.close()
    writer.close()
    preemption.restore()
  if preemption.requested:
    logging.warning("stopped by SIGTERM at update %d; rerun the same command to resume", update)
  return results


GRID_IMAGES = 6


def validate(model, variables, source, max_images=0, size=None, writer=None, step=0):
  """The field's measures (metrics.KEYS) over `source`, logged with a prediction grid.

  `max_images` > 0 takes only the first ones. The maps are those
  `python -m poolnet_jax.cli.evaluate` computes (native size unless `size`), so the
  numbers equal the evaluation command's; the grid shows the first GRID_IMAGES.
  """
  shown = []

  def show(index, image, levels, gt):
    if index < GRID_IMAGES:
      shown.append((image, levels, gt))

  metrics = predictor_lib.evaluate_model(model, variables, source, size, max_images, on_map=show)
  if metrics.scaled_gts:
    logging.warning(
      "validation: %d ground truths stored as 0/1 were read as 0/255 (%s, ...)",
      len(metrics.scaled_gts),
      ", ".join(metrics.scaled_gts[:5]),
    )
  everything = metrics.results()
  results = {key: everything[key] for key in metrics_lib.KEYS}
  logging.info(
    "validation at update %d over %d images: %s",
    step,
    len(metrics),
    ", ".join(f"{k} {v:.4f}" for k, v in results.items()),
  )
  if writer is not None:
    grid = plots.prediction_grid(*zip(*shown), title=f"update {step}")
    writer.scalars(step, results, prefix="val/")
    writer.image(step, "val/predictions", grid)
    writer.save_png(step, "predictions", grid)
  return results


class BestModel:
  """Exports the model with the lowest validation MAE as a `load_pretrained` directory."""

  def __init__(self, directory, spec):
    self.directory, self.spec = directory, spec
    self.record_file = os.path.join(directory, "best.json")
    self.best_mae = np.inf
    if os.path.exists(self.record_file):
      with open(self.record_file, encoding="utf-8") as f:
        self.best_mae = json.load(f)["MAE"]

  def update(self, step, results, variables):
    if not results or not results["MAE"] < self.best_mae:
      return False
    self.best_mae = results["MAE"]
    pretrained.save_pretrained(
      self.directory, self.spec, variables, overwrite=True
    )  # the one writer of this directory
    if jax.process_index() == 0:  # every process saves (orbax writes once); one writes the rest
      with open(self.record_file, "w", encoding="utf-8") as f:
        json.dump({"step": step, **{k: float(v) for k, v in results.items()}}, f, indent=2)
      logging.info("best model so far (MAE %.4f) exported to %s", self.best_mae, self.directory)
    return True
