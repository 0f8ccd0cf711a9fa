"""What a run is made of, read from its config: the model, the data, the first weights."""

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np
import flax

from poolnet_jax.data import datasets
from poolnet_jax.models import ModelSpec, create_model
from poolnet_jax.train import state as state_lib
from poolnet_jax.weights import pretrained
from poolnet_jax.weights.torch_io import backbones, mapping

LOUD = "\n" + "!" * 78 + "\n"


def model_spec(config):
  """The config's ModelSpec: `config.model` (variant, width, stages, resnet_style, dtype)."""
  return ModelSpec(**config.model.to_dict())


def create_model_from_config(config):
  """The config's model: its spec (`model`) and how it is computed: `remat`, the
  convolutions (`conv`: "" = the backend's default; `resize_conv`: None = as `conv`) and
  the initialisation of what no checkpoint gives (`init`: "" = the original's)."""
  return create_model(
    model_spec(config),
    conv=config.conv or None,
    resize_conv=config.resize_conv,
    init=config.init or None,
    remat=config.remat,
  )


def data_source(config, name, split):
  """The TFDS source of `name`'s `split` for a run of `config` (data/datasets.load_dataset:
  built first if need be, once for several processes)."""
  return datasets.load_dataset(f"{name}:{split}", config.data_dir, config.manual_dir)


def updates_per_epoch(config, num_train_images):
  """Optimizer updates in one epoch: epoch images / (global batch * iter_size)."""
  epoch_images = config.epoch_images or num_train_images
  return max(1, epoch_images // (config.batch_size * config.iter_size))


def schedule_steps(config, num_train_images):
  """(number of updates, updates at which the learning rate drops)."""
  per_epoch = updates_per_epoch(config, num_train_images)
  total = config.num_train_steps if config.num_train_steps > 0 else config.num_epochs * per_epoch
  decays = tuple(config.lr_decay_steps) or tuple(
    int(round(e * per_epoch)) for e in config.lr_decay_epochs
  )
  # Decays past the end are kept: the optimizer's structure must not depend on the
  # run's length, or a run extended after it ended could not resume.
  return total, tuple(d for d in decays if d > 0)


SCHEDULES = ("step", "cosine")


def learning_rate(config, num_updates, decays):
  """The learning-rate schedule of a config.

  `lr_schedule` "step" (default, the paper's: /10 at `decays`) or "cosine"
  (to `lr_end_factor` * learning_rate at `num_updates`), both after
  `warmup_steps` (default 0) of linear warmup.
  """
  kind, warmup = config.lr_schedule, config.warmup_steps
  if kind == "step":
    return state_lib.learning_rate_schedule(config.learning_rate, decays, warmup_steps=warmup)
  if kind == "cosine":
    return state_lib.cosine_schedule(
      config.learning_rate, num_updates, warmup, config.lr_end_factor
    )
  raise ValueError(f"unknown lr_schedule {kind!r}; expected one of {SCHEDULES}")


def optimizer(config, params, num_updates, decays):
  """(optax optimizer, learning-rate schedule) of a config.

  Adam moments restart at `decays` only under the step schedule with
  `reset_optimizer_at_decay`; `clip_grad_norm` > 0 (default 0, off) clips.
  """
  schedule = learning_rate(config, num_updates, decays)
  resets = decays if (config.reset_optimizer_at_decay and config.lr_schedule == "step") else ()
  tx = state_lib.create_optimizer(
    params, schedule, config.weight_decay, reset_moments_at=resets, clip_norm=config.clip_grad_norm
  )
  return tx, schedule


def initial_variables(config, model, rng):
  """Random variables, then the backbone file or a full PoolNet checkpoint on top.

  The random draws follow the model's initialisation scheme (`config.init`,
  models/init.py).
  """
  size = max(model.min_input_size(), 128)
  variables = jax.jit(model.init)(rng, jnp.zeros((1, size, size, 3), jnp.float32))
  variables = flax.core.unfreeze(variables)
  if config.init_checkpoint:
    _, loaded = pretrained.load_pretrained(config.init_checkpoint)
    _check_same_tree(variables, loaded, config.init_checkpoint)
    logging.info("fine-tuning from %s", config.init_checkpoint)
    return jax.tree_util.tree_map(np.asarray, loaded)
  if config.backbone_checkpoint:
    backbone, _ = backbones.load_backbone(
      config.backbone_checkpoint, model.backbone, **model_spec(config).options()
    )
    logging.info("backbone initialised from %s", config.backbone_checkpoint)
    return backbones.merge_backbone(variables, backbone)
  logging.warning(
    "%sTraining PoolNet %s from RANDOM weights: no backbone_checkpoint and no "
    "init_checkpoint in the config. The paper starts from ImageNet backbones "
    "(--config.backbone_checkpoint=resnet50_caffe.pth).%s",
    LOUD,
    model_spec(config),
    LOUD,
  )
  logging.info("from-scratch initialisation: %s", model.conv.init)
  return variables


def _check_same_tree(expected, loaded, source):
  want = {k: v.shape for k, v in flax.traverse_util.flatten_dict(expected, sep="/").items()}
  got = {k: v.shape for k, v in flax.traverse_util.flatten_dict(loaded, sep="/").items()}
  if want != got:
    diff = sorted(set(want.items()) ^ set(got.items()))[:5]
    raise mapping.CheckpointMismatch(
      f"{source}: the checkpoint does not fit the configured model (different variant or "
      f"overrides?); first differences: {diff}"
    )
