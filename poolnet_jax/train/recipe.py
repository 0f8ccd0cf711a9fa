"""A run's recipe, read from its config and checked before any work.

What a run is made of (the model spec, the data sources, the schedule, the optimizer, the
first weights), and `check(config)`: every value that cannot work, as one ConfigError
line; `unknown_override(config, argv)` names a mistyped `--config.KEY` with the nearest
valid keys.
"""

import difflib
import math
import os
import re

from absl import logging
import flax
import jax
import jax.numpy as jnp
import numpy as np

from poolnet_jax import runtime
from poolnet_jax.data import datasets
from poolnet_jax.data import pipeline
from poolnet_jax.errors import UserError
from poolnet_jax.models import VARIANTS, ModelSpec, create_model, spec_problems
from poolnet_jax.models import init as init_schemes
from poolnet_jax.models.layers import CONV_CHOICES
from poolnet_jax.train import parallel as parallel_lib
from poolnet_jax.train import step as step_lib
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
    return step_lib.learning_rate_schedule(config.learning_rate, decays, warmup_steps=warmup)
  if kind == "cosine":
    return step_lib.cosine_schedule(config.learning_rate, num_updates, warmup, config.lr_end_factor)
  raise ValueError(f"unknown lr_schedule {kind!r}; expected one of {SCHEDULES}")


def optimizer(config, params, num_updates, decays):
  """(optax optimizer, learning-rate schedule) of a config.

  Adam moments restart at `decays` only under the step schedule with
  `reset_optimizer_at_decay`; `clip_grad_norm` > 0 (default 0, off) clips.
  """
  schedule = learning_rate(config, num_updates, decays)
  resets = decays if (config.reset_optimizer_at_decay and config.lr_schedule == "step") else ()
  tx = step_lib.create_optimizer(
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


OVERRIDE_FLAG = re.compile(r"^--?config\.([A-Za-z0-9_.]+)(=|$)")


class ConfigError(UserError):
  """A training config with values that cannot work."""


def check(config, check_datasets=True):
  """Raises ConfigError naming every impossible value of a training config.

  With `check_datasets`, the dataset names, configs and splits are looked up in
  the TFDS registry (nothing is built) and `data_dir` / `manual_dir` must be folders.
  """
  problems = _value_problems(config)
  if check_datasets and not problems:
    problems = _dataset_problems(config)
  if problems:
    raise ConfigError("config: " + "; ".join(problems))


def _value_problems(config):
  problems = []

  def need(ok, message):
    if not ok:
      problems.append(message)

  def one_of(key, value, choices):
    need(value in choices, f"{key}={value!r} is not one of {', '.join(map(str, choices))}")

  model_problems = _model_problems(config)
  problems.extend(model_problems)

  for key in ("learning_rate",):
    need(_number(config[key]) and config[key] > 0, f"{key}={config[key]!r} must be > 0")
  for key in (
    "batch_size",
    "iter_size",
    "log_every_steps",
    "eval_every_steps",
    "checkpoint_every_steps",
    "keep_checkpoints",
  ):
    need(_int(config[key]) and config[key] >= 1, f"{key}={config[key]!r} must be an integer >= 1")
  if _int(config.batch_size) and config.batch_size >= 1:
    need(
      config.batch_size % jax.device_count() == 0,
      f"batch_size={config.batch_size} (global) is not a multiple of the "
      f"{jax.device_count()} devices",
    )
  for key in ("weight_decay", "warmup_steps", "clip_grad_norm", "lr_end_factor"):
    if key in config:
      need(_number(config[key]) and config[key] >= 0, f"{key}={config[key]!r} must be >= 0")
  need(
    config.num_train_steps > 0 or config.num_epochs > 0,
    f"num_train_steps={config.num_train_steps} and num_epochs={config.num_epochs}: one must be > 0",
  )
  one_of("lr_schedule", config.lr_schedule, SCHEDULES)
  one_of("parallel", config.parallel, parallel_lib.MODES)
  need(
    config.init in ("",) + init_schemes.SCHEMES,
    f"init={config.init!r} is not one of {', '.join(init_schemes.SCHEMES)} ('' = original)",
  )
  if config.parallel == "jit" and jax.device_count() > 1 and config.iter_size > 1:
    logging.warning(
      "parallel='jit' all-reduces the gradient of every call: %d all-reduces "
      "per update at iter_size=%d (pmap and shard_map run one)",
      config.iter_size,
      config.iter_size,
    )
  if not model_problems and config.model.dtype == "float16":
    logging.warning(
      "model.dtype='float16' trains without loss scaling, and this model's gradients do not "
      "fit float16's range (ResNet-50 at 300x400, initial weights: 2.5 %% underflow to 0, and "
      "a loss scale of 64 already overflows; python -m bench.gradient_range); bfloat16 has "
      "float32's range"
    )
  if "conv" in config:
    one_of("conv", config.conv, ("",) + CONV_CHOICES)
  one_of("matmul_precision", config.matmul_precision, runtime.PRECISIONS)
  one_of("compile_ahead", str(config.compile_ahead).lower(), ("auto", "true", "false"))
  need(
    _int(config.compile_workers) and config.compile_workers >= 0,
    f"compile_workers={config.compile_workers!r} must be an integer >= 0",
  )
  need(
    _int(config.data.native_multiple) and config.data.native_multiple >= 0,
    f"data.native_multiple={config.data.native_multiple!r} must be an integer >= 0",
  )
  rescale = config.data.native_max_rescale
  need(
    isinstance(rescale, (int, float))
    and not isinstance(rescale, bool)
    and 0 <= rescale < 1
    and (not rescale or config.data.native_multiple > 0),
    f"data.native_max_rescale={rescale!r} must be in [0, 1) and needs data.native_multiple > 0",
  )
  need(
    _int(config.data.prefetch_to_device) and config.data.prefetch_to_device >= 1,
    f"data.prefetch_to_device={config.data.prefetch_to_device!r} must be an integer >= 1",
  )
  for key in ("worker_count", "read_threads", "prefetch"):
    need(
      _int(config.data[key]) and config.data[key] >= 0,
      f"data.{key}={config.data[key]!r} must be an integer >= 0",
    )
  one_of("data.mode", config.data.mode, pipeline.MODES)
  need(_ints(config.data.size, 2, 1), f"data.size={config.data.size!r} must be (H, W) >= 1")
  need(
    all(_ints(b, 2, 1) for b in config.data.buckets) and len(config.data.buckets) > 0,
    f"data.buckets={config.data.buckets!r} must be ((H, W), ...)",
  )
  profile = tuple(config.profile_steps)
  need(
    not profile or (_ints(profile, 2, 1) and profile[0] <= profile[1]),
    f"profile_steps={config.profile_steps!r} must be () (off) or (first, last) "
    "updates with 1 <= first <= last",
  )
  eval_size = tuple(config.eval_size)
  need(
    not eval_size or _ints(eval_size, 2, 1),
    f"eval_size={config.eval_size!r} must be () (native size) or (H, W)",
  )
  return problems


def _dataset_problems(config):

  problems = []
  for key in ("data_dir", "manual_dir"):
    path = config.get(key)
    if (
      path
      and os.path.exists(os.path.expanduser(path))
      and not os.path.isdir(os.path.expanduser(path))
    ):
      problems.append(f"{key}={path} is a file, not a folder")
  if problems:
    return problems
  sets = [
    ("dataset", config.dataset, config.train_split),
    ("eval_dataset", config.eval_dataset, config.eval_split),
  ]
  if VARIANTS[config.model.variant]["edge"]:
    sets.append(("edge_dataset", config.edge_dataset, "train"))
  for key, name, split in sets:
    spec = f"{name}:{split}"
    try:
      datasets.dataset_builder(spec, config.data_dir, config.manual_dir)
    except UserError as error:
      message = str(error)
      message = message[len(spec) + 2 :] if message.startswith(spec + ": ") else message
      problems.append(f"{key}={name!r}: {message}")
  return problems


def _number(value):
  return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _int(value):
  return isinstance(value, int) and not isinstance(value, bool)


def _model_problems(config):
  """What cannot work in `config.model`, the ModelSpec's fields (models/spec.py)."""
  model = config.model
  if not hasattr(model, "to_dict"):
    return [
      f"model={model!r} is not a model spec: write model.variant={model!r} (and model.width, "
      f"model.stages, model.resnet_style, model.dtype for what model_overrides held)"
    ]
  problems = [f"model.{problem}" for problem in spec_problems(model.to_dict())]
  if "model_overrides" in config:
    problems.append("model_overrides is gone: its keys are model.width, model.dtype, ...")
  return problems


def _ints(values, count, minimum):
  values = tuple(values) if isinstance(values, (tuple, list)) else None
  return (
    values is not None and len(values) == count and all(_int(v) and v >= minimum for v in values)
  )


def config_keys(config, prefix=""):
  """Every dotted key of a ConfigDict, nested ones included ("data.mode", ...)."""
  keys = []
  for key in config.keys():
    keys.append(prefix + key)
    value = config[key]
    if hasattr(value, "keys") and hasattr(value, "to_dict"):
      keys += config_keys(value, f"{prefix}{key}.")
  return keys


def unknown_override(config, argv):
  """A message naming the first `--config.KEY` of argv whose KEY `config` lacks, or None."""
  keys = config_keys(config)
  for arg in argv:
    match = OVERRIDE_FLAG.match(arg)
    if match and match.group(1) not in keys:
      key = match.group(1)
      near = difflib.get_close_matches(key, keys, n=3, cutoff=0.6)
      hint = (
        f"nearest valid keys: {', '.join(near)}" if near else "see the config file for its keys"
      )
      return f"--config.{key}: the config has no key {key!r}; {hint}"
  return None
