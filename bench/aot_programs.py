"""The project's real programs lowered for compile-only devices, on `jax.ShapeDtypeStruct`s.

For a shipped config (poolnet_jax/configs/<name>.py) on a list of devices: each task's gradient
program and the update, from train/parallel.py's trainer of the config's `parallel`
mode; inference (`model.apply`, the batch split over the devices, the variables
replicated); and the exported artifact's function (uint8 RGB in, map out: the
`artifact.saliency_function` vmapped, with the variables as arguments instead of
constants). The model computes as on an accelerator (`conv="xla"` unless the config
says otherwise), in the setting's dtype and remat.
"""

import copy
import dataclasses
import importlib

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from poolnet_jax.inference import artifact
from poolnet_jax.train import parallel as parallel_lib
from poolnet_jax.train import recipe
from poolnet_jax.train import step as step_lib

PAPER_SIZE = (300, 400)  # native mode: the typical DUTS-TR image, batch 1 per chip
EDGE_SIZE = (321, 481)  # the joint models' edge batches: BSDS-PASCAL images, batch 1
DUTS_TRAIN = 10553  # images per epoch, for the schedule's structure
CONFIGS = (
  "resnet50",
  "resnet50_batched",
  "resnet50_edge",
  "vgg16",
  "vgg16_batched",
  "vgg16_edge",
  "demo",
)
TRAIN, INFERENCE, EXPORT = "train", "inference", "export"


@dataclasses.dataclass(frozen=True)
class Setting:
  """What one compile is of: a config at a per-chip batch and size, dtype and remat."""

  config: str
  per_chip_batch: int
  size: tuple
  dtype: str
  remat: bool
  parallel: str

  @property
  def label(self):
    h, w = self.size
    remat = " remat" if self.remat else ""
    return f"{self.config} {self.per_chip_batch}x{h}x{w} {self.dtype}{remat} {self.parallel}"


def load_config(name):
  return importlib.import_module(f"poolnet_jax.configs.{name}").get_config()


def default_setting(name, dtype=None, remat=None, parallel=None):
  """The config's own batch per chip and size: native mode batch 1 at 300x400, fixed
  mode its size, buckets mode its first bucket, `batch_size` images per chip."""
  config = load_config(name)
  mode = config.data.mode
  if mode == "native":
    batch, size = 1, PAPER_SIZE
  else:
    batch = config.batch_size
    size = tuple(config.data.size) if mode == "fixed" else tuple(config.data.buckets[0])
  return Setting(
    name,
    batch,
    tuple(size),
    dtype or config.model.dtype,
    config.remat if remat is None else remat,
    parallel or config.parallel,
  )


def _config(setting):
  config = copy.deepcopy(load_config(setting.config))
  config.model.dtype = setting.dtype
  config.remat = setting.remat
  config.parallel = setting.parallel
  config.conv = config.conv or "xla"  # the accelerators' default (models/layers.py)
  return config


def _abstract_state(config, model, size):
  def make():
    variables = model.init(jax.random.PRNGKey(0), jnp.zeros((1, *size, 3), jnp.float32))
    num_updates, decays = recipe.schedule_steps(config, DUTS_TRAIN)
    tx, _ = recipe.optimizer(config, variables["params"], num_updates, decays)
    return step_lib.TrainState.create(variables, tx)

  return jax.eval_shape(make)


def _struct(x, sharding=None, lead=None):
  shape = x.shape if lead is None else (lead,) + tuple(x.shape)
  return jax.ShapeDtypeStruct(shape, x.dtype, sharding=sharding)


def _batch(global_batch, size, sharding=None, lead=None):
  h, w = size
  shapes = {"image": (global_batch, h, w, 3), "label": (global_batch, h, w, 1)}
  if lead is not None:
    shapes = {k: (lead, global_batch // lead) + v[1:] for k, v in shapes.items()}
  return {k: jax.ShapeDtypeStruct(v, jnp.uint8, sharding=sharding) for k, v in shapes.items()}


def programs(setting, devices, kinds=(TRAIN, INFERENCE, EXPORT)):
  """{name: (jitted or pmapped program, abstract args)} of `setting` on `devices`."""
  config = _config(setting)
  model = recipe.create_model_from_config(config)
  n, batch = len(devices), setting.per_chip_batch
  state = _abstract_state(config, model, setting.size)
  out = {}
  if TRAIN in kinds:
    trainer = parallel_lib.make_trainer(model, config.iter_size, setting.parallel, devices)
    sizes = {"saliency": (batch, setting.size), "edge": (1, EDGE_SIZE)}
    if setting.parallel == "pmap":
      state_in = jax.tree_util.tree_map(lambda x: _struct(x, lead=n), state)
      zero = jax.eval_shape(lambda p: step_lib.zero_sums(model, p), state.params)
      sums = jax.tree_util.tree_map(lambda x: _struct(x, lead=n), zero)
      batches = {t: _batch(b * n, s, lead=n) for t, (b, s) in sizes.items()}
    else:
      state_in = jax.tree_util.tree_map(lambda x: _struct(x, trainer.replicated), state)
      sums = jax.eval_shape(trainer.init_sums, state_in)
      if setting.parallel == "shard_map":
        sums = jax.tree_util.tree_map(lambda x: _struct(x, trainer.split), sums)
      batches = {t: _batch(b * n, s, trainer.split) for t, (b, s) in sizes.items()}
    call = batches if model.edge else batches["saliency"]
    out.update(trainer.programs(state_in, sums, call))
  if INFERENCE in kinds or EXPORT in kinds:
    mesh = Mesh(np.asarray(devices), ("data",))
    replicated, split = NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))
    variables = {"params": state.params}
    if state.batch_stats:
      variables["batch_stats"] = state.batch_stats
    variables = jax.tree_util.tree_map(lambda x: _struct(x, replicated), variables)
    h, w = setting.size
    if INFERENCE in kinds:
      images = jax.ShapeDtypeStruct((batch * n, h, w, 3), jnp.float32, sharding=split)
      out["inference"] = (jax.jit(model.apply), (variables, images))
    if EXPORT in kinds:
      rgb = jax.ShapeDtypeStruct((batch * n, h, w, 3), jnp.uint8, sharding=split)

      def exported(variables, rgb):
        return jax.vmap(artifact.saliency_function(model, variables))(rgb)

      out["export"] = (jax.jit(exported), (variables, rgb))
  return out
