"""What a run is made of, read from its config: the model, the data, the first weights."""

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np
import flax
import tensorflow_datasets as tfds

from poolnet_jax import pretrained
from poolnet_jax.models import create_model
from poolnet_jax.torch_io import backbones

LOUD = "\n" + "!" * 78 + "\n"


def model_overrides(config):
  """create_model overrides of a config, as plain Python values."""
  overrides = dict(config.model_overrides.to_dict()) if "model_overrides" in config else {}
  if "stages" in overrides:
    overrides["stages"] = tuple(overrides["stages"])
  return overrides


def create_model_from_config(config):
  overrides = model_overrides(config)
  if "dtype" in overrides:
    overrides["dtype"] = jnp.dtype(overrides["dtype"])
  return create_model(config.model, **overrides)


def data_source(name, split, data_dir=None, manual_dir=None):
  """A TFDS data source, building the dataset first if it is not there yet."""
  import poolnet_jax.data  # pylint: disable=import-outside-toplevel,unused-import  (registers)
  builder = tfds.builder(name, data_dir=data_dir)
  if not builder.is_prepared():
    logging.info("building TFDS dataset %s in %s", name, builder.data_dir)
    config = tfds.download.DownloadConfig(manual_dir=manual_dir) if manual_dir else None
    builder.download_and_prepare(download_config=config)
  return builder.as_data_source(split=split)


def updates_per_epoch(config, num_train_images):
  """Optimizer updates in one epoch: epoch images / (global batch * iter_size)."""
  epoch_images = config.get("epoch_images", 0) or num_train_images
  return max(1, epoch_images // (config.batch_size * config.iter_size))


def schedule_steps(config, num_train_images):
  """(number of updates, updates at which the learning rate drops)."""
  per_epoch = updates_per_epoch(config, num_train_images)
  total = config.num_train_steps if config.num_train_steps > 0 else config.num_epochs * per_epoch
  decays = tuple(config.get("lr_decay_steps", ())) or tuple(
      int(round(e * per_epoch)) for e in config.lr_decay_epochs)
  # Decays past the end are kept: the optimizer's structure must not depend on the
  # run's length, or a run extended after it ended could not resume.
  return total, tuple(d for d in decays if d > 0)


def initial_variables(config, model, rng):
  """Random variables, then the backbone file or a full PoolNet checkpoint on top."""
  size = max(model.min_input_size(), 128)
  variables = jax.jit(model.init)(rng, jnp.zeros((1, size, size, 3), jnp.float32))
  variables = flax.core.unfreeze(variables)
  if config.init_checkpoint:
    _, loaded = pretrained.load_pretrained(config.init_checkpoint)
    _check_same_tree(variables, loaded, config.init_checkpoint)
    logging.info("fine-tuning from %s", config.init_checkpoint)
    return jax.tree_util.tree_map(np.asarray, loaded)
  if config.backbone_checkpoint:
    backbone = backbones.load_backbone(config.backbone_checkpoint, model.backbone,
                                       **model_overrides(config))
    logging.info("backbone initialised from %s", config.backbone_checkpoint)
    return backbones.merge_backbone(variables, backbone)
  logging.warning("%sTraining PoolNet %s from RANDOM weights: no backbone_checkpoint and no "
                  "init_checkpoint in the config. The paper starts from ImageNet backbones "
                  "(--config.backbone_checkpoint=resnet50_caffe.pth).%s", LOUD, config.model, LOUD)
  return variables


def _check_same_tree(expected, loaded, source):
  want = {k: v.shape for k, v in flax.traverse_util.flatten_dict(expected, sep="/").items()}
  got = {k: v.shape for k, v in flax.traverse_util.flatten_dict(loaded, sep="/").items()}
  if want != got:
    diff = sorted(set(want.items()) ^ set(got.items()))[:5]
    raise ValueError(f"{source}: the checkpoint does not fit the configured model "
                     f"(different variant or overrides?); first differences: {diff}")
