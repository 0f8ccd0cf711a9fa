"""Training programs: local gradients summed on each device, one all-reduce per update.

One optimizer update of the original's recipe takes `iter_size` calls, and a
call of a joint (edge) model one edge and one saliency batch. Each batch runs a
*gradient program* that adds this device's gradient into a sum kept on the
device, with no collective; the *update program* then averages the sum over
calls and devices (one all-reduce) and applies the optimizer once. The edge and
the saliency gradients are two programs (the original adds the two losses and
runs one backward pass; BatchNorm is frozen and the forward passes share only
the parameters, so the gradient of the sum is the sum of the gradients): the
programs compiled are (edge shapes) + (saliency shapes), not their product.

Batches arrive as uint8: images [local batch, H, W, 3] RGB, labels
[local batch, H, W, 1] in 0..255. BGR-minus-mean preprocessing and label / 255
run on the device. Loss sums stay on the device until `read_metrics`.

Three data-parallel wrappers run the same per-device loss:
`PmapTrainer` (`jax.pmap`, the default) and `ShardMapTrainer` (`jax.shard_map`
on a 1-D mesh) keep the gradient sums as [devices, ...] arrays, one slice per
device; `JitTrainer` (`jax.jit` with `NamedSharding`: the batch sharded along its
leading axis, the state replicated) lets XLA all-reduce every call's gradient, so
it is one all-reduce per update only at iter_size 1 (see its docstring).
"""

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from poolnet_jax import compilation
from poolnet_jax import image as image_lib
from poolnet_jax.train import losses

AXIS = "data"
TASKS = ("saliency", "edge")
MODES = ("pmap", "shard_map", "jit")


class GradSum(struct.PyTreeNode):
  """One device's running sums: gradients of this update, task losses since the last read."""

  grads: Any
  loss_sums: Any  # {task: sum of per-image losses}
  calls: Any  # {task: calls in loss_sums}


def _variables(params, batch_stats):
  return {"params": params, "batch_stats": batch_stats} if batch_stats else {"params": params}


def task_loss(model, params, batch_stats, images, labels, task="saliency"):
  """Loss per image of one batch of `task` as the original normalises it (before
  iter_size): preprocessed float `images`, float `labels` in [0, 1]."""
  variables = _variables(params, batch_stats)
  if task == "edge":
    fused, sides = model.apply(variables, images, mode="edge")
    return losses.edge_loss(fused, sides, labels) / images.shape[0]
  return losses.saliency_loss(model.apply(variables, images), labels) / images.shape[0]


def compute_loss(model, params, batch_stats, batch):
  """The whole loss of one call on preprocessed float batches, and its parts.

  Plain models take {"image", "label"}; edge models {"saliency": {...}, "edge": {...}}
  and sum both losses, as the original does.
  """
  if not model.edge:
    loss = task_loss(model, params, batch_stats, batch["image"], batch["label"])
    return loss, {"loss": loss}
  parts = {
    f"{task}_loss": task_loss(
      model, params, batch_stats, batch[task]["image"], batch[task]["label"], task
    )
    for task in ("edge", "saliency")
  }
  return sum(parts.values()), {"loss": sum(parts.values()), **parts}


# label / 255 as numpy divides (XLA would multiply by a rounded 1/255 instead).
LABEL_LEVELS = np.arange(256, dtype=np.float32) / np.float32(255.0)


def device_inputs(batch):
  """uint8 {"image", "label"} -> (BGR minus mean float32, label / 255 float32), on device,
  bit-equal to the host's numpy rule."""
  labels = jnp.asarray(LABEL_LEVELS)[batch["label"].astype(jnp.int32)]
  return image_lib.preprocess(batch["image"]), labels


def tasks_of(model):
  return TASKS if model.edge else ("saliency",)


def zero_sums(model, params):
  """A GradSum of zeros for one device."""
  zeros = lambda: {task: jnp.zeros((), jnp.float32) for task in tasks_of(model)}
  return GradSum(
    grads=jax.tree_util.tree_map(jnp.zeros_like, params),
    loss_sums=zeros(),
    calls={task: jnp.zeros((), jnp.int32) for task in tasks_of(model)},
  )


def device_loss(model, task, params, batch_stats, batch):
  """`task_loss` of one device's uint8 batch, preprocessed on the device."""
  images, labels = device_inputs(batch)
  return task_loss(model, params, batch_stats, images, labels, task)


def _finite_or_nan(loss):
  """`loss`, whose gradient turns NaN where the loss is not finite (so the update that
  follows sees it on every device and skips: optax.apply_if_finite)."""
  return loss * jnp.where(jnp.isfinite(jax.lax.stop_gradient(loss)), 1.0, jnp.nan)


def accumulate(model, task, state, sums, batch):
  """Adds one batch's local gradient and loss to `sums` (no collective)."""
  loss, grads = jax.value_and_grad(
    lambda params: _finite_or_nan(device_loss(model, task, params, state.batch_stats, batch))
  )(state.params)
  return _added(sums, task, grads, loss)


def _added(sums, task, grads, loss):
  return sums.replace(
    grads=jax.tree_util.tree_map(jnp.add, sums.grads, grads),
    loss_sums={**sums.loss_sums, task: sums.loss_sums[task] + loss},
    calls={**sums.calls, task: sums.calls[task] + 1},
  )


def update(state, sums, iter_size, mean):
  """The optimizer on the gradient sum averaged over `iter_size` calls and, by `mean`
  (the one collective), over devices; the gradient sum restarts at zero."""
  grads = mean(jax.tree_util.tree_map(lambda g: g / iter_size, sums.grads))
  state = state.apply_gradients(grads)
  return state, sums.replace(grads=jax.tree_util.tree_map(jnp.zeros_like, sums.grads))


def read_metrics(sums, mean):
  """(sums with the losses restarted, mean loss per call of each task since the last
  read, averaged over devices by `mean`)."""
  means = mean(
    {task: sums.loss_sums[task] / jnp.maximum(sums.calls[task], 1) for task in sums.loss_sums}
  )
  metrics = {f"{task}_loss": value for task, value in means.items()}
  metrics["loss"] = sum(means.values())
  restarted = sums.replace(
    loss_sums=jax.tree_util.tree_map(jnp.zeros_like, sums.loss_sums),
    calls=jax.tree_util.tree_map(jnp.zeros_like, sums.calls),
  )
  return restarted, metrics


def nonfinite_updates(state):
  """Updates skipped because of a non-finite loss or gradient since the run began
  (a device scalar, the same on every device)."""
  return state.opt_state.total_notfinite


class _Trainer:
  """What every wrapper offers; subclasses say where arrays live and how they are mapped.

  `accumulate(state, sums, batch, task)` and `update(state, sums)` donate what they
  replace. The programs are named `accumulate_<task>`, `update` and `read_metrics`
  (what poolnet_jax.compilation counts them by: `jit(...)`, `pmap(...)` under pmap).
  """

  def __init__(self, model, iter_size, devices):
    self.model, self.iter_size = model, iter_size
    self.devices = list(devices) if devices is not None else jax.devices()
    self.local_devices = [d for d in self.devices if d.process_index == jax.process_index()]
    self._accumulate = {task: self._map_accumulate(task) for task in tasks_of(model)}
    self._update, self._read = self._map_update(), self._map_read()

  def accumulate(self, state, sums, batch, task="saliency"):
    return self._accumulate[task](state, sums, batch)

  def call(self, state, sums, batch):
    """One call of the recipe: every task's batch of a (joint) batch."""
    if not self.model.edge:
      return self.accumulate(state, sums, batch)
    for task in ("edge", "saliency"):
      sums = self.accumulate(state, sums, batch[task], task)
    return sums

  def update(self, state, sums):
    return self._update(state, sums)

  def read_metrics(self, sums):
    """(sums with the losses restarted, {name: float}): the one host read of a log step."""
    sums, metrics = self._read(sums)
    return sums, {
      k: float(np.asarray(v.addressable_data(0)).reshape(-1)[0]) for k, v in metrics.items()
    }

  def compile(self, state, sums, batch):
    """Compiles ahead of time the programs a call with `batch` (shapes only) and an update
    need: {name: jax.stages.Compiled}; later calls of those shapes compile nothing."""
    batches = batch if self.model.edge else {"saliency": batch}
    programs = {
      f"accumulate_{task}": (self._accumulate[task], (state, sums, part))
      for task, part in batches.items()
    }
    programs["update"] = (self._update, (state, sums))
    compiled = {}
    for name, (program, args) in programs.items():
      with compilation.naming(name):
        compiled[name] = program.lower(*args).compile()
    return compiled

  def nonfinite_updates(self, state):
    return int(np.asarray(nonfinite_updates(state).addressable_data(0)).reshape(-1)[0])


class PmapTrainer(_Trainer):
  """`jax.pmap` over the devices (default: all of them, of every process); the state and
  the sums carry a leading local-device axis; batches are split [devices, per_device]."""

  def _map_accumulate(self, task):
    return self._pmap(
      f"accumulate_{task}", functools.partial(accumulate, self.model, task), donate=(1,)
    )

  def _map_update(self):
    mean = functools.partial(jax.lax.pmean, axis_name=AXIS)
    return self._pmap(
      "update", functools.partial(update, iter_size=self.iter_size, mean=mean), donate=(0, 1)
    )

  def _map_read(self):
    mean = functools.partial(jax.lax.pmean, axis_name=AXIS)
    return self._pmap("read_metrics", functools.partial(read_metrics, mean=mean), donate=(0,))

  def _pmap(self, name, fn, donate):
    mapped = jax.pmap(fn, AXIS, devices=self._pmap_devices(), donate_argnums=donate)
    return _PmapProgram(name, mapped)

  def _pmap_devices(self):
    return self.devices if len(self.devices) != len(jax.devices()) else None

  @property
  def _sharding(self):
    return NamedSharding(Mesh(np.asarray(self.local_devices), (AXIS,)), P(AXIS))

  def _stack(self, x):
    x = np.asarray(x)
    return jax.device_put(np.broadcast_to(x, (len(self.local_devices),) + x.shape), self._sharding)

  def replicate(self, state):
    return jax.tree_util.tree_map(self._stack, state)

  def init_sums(self, state):
    return self.replicate(jax.device_get(zero_sums(self.model, self.unreplicate(state).params)))

  def unreplicate(self, state):
    return jax.tree_util.tree_map(lambda x: np.asarray(x.addressable_data(0))[0], state)

  def put(self, batch):
    """A host batch [local batch, ...] on the local devices as [devices, per_device, ...]."""
    n = len(self.local_devices)
    return jax.tree_util.tree_map(
      lambda x: jax.device_put(x.reshape((n, -1) + x.shape[1:]), self._sharding), batch
    )


class _MeshTrainer(_Trainer):
  """State replicated and batches [global batch, ...] sharded over a 1-D `data` mesh;
  gradient sums [devices, ...], slice d on device d."""

  def __init__(self, model, iter_size, devices=None):
    devices = list(devices) if devices is not None else jax.devices()
    self.mesh = Mesh(np.asarray(devices), (AXIS,))
    self.replicated, self.split = NamedSharding(self.mesh, P()), NamedSharding(self.mesh, P(AXIS))
    super().__init__(model, iter_size, devices)

  def replicate(self, state):
    return jax.tree_util.tree_map(
      lambda x: jax.make_array_from_process_local_data(self.replicated, np.asarray(x)), state
    )

  def unreplicate(self, state):
    return jax.tree_util.tree_map(lambda x: np.asarray(x.addressable_data(0)), state)

  def init_sums(self, state):
    n = len(self.devices)
    make = jax.jit(
      lambda params: jax.tree_util.tree_map(
        lambda x: jnp.broadcast_to(x, (n,) + x.shape), zero_sums(self.model, params)
      ),
      out_shardings=self.split,
    )
    return make(state.params)

  def put(self, batch):
    """This process's rows of the global batch, as one global array sharded on `data`."""
    return jax.tree_util.tree_map(
      lambda x: jax.make_array_from_process_local_data(self.split, x), batch
    )


class ShardMapTrainer(_MeshTrainer):
  """`jax.shard_map` of the per-device functions, `lax.pmean` as under pmap."""

  def _shard_map(self, name, fn, in_specs, out_specs, donate):
    # check_vma=False: the functions average over devices themselves (pmean), as
    # under pmap; with it on, JAX would also psum the gradients of the replicated state.
    mapped = jax.shard_map(
      fn, mesh=self.mesh, in_specs=in_specs, out_specs=out_specs, check_vma=False
    )
    return jax.jit(_named(name, mapped), donate_argnums=donate)

  def _map_accumulate(self, task):
    def per_device(state, sums, batch):
      sums = accumulate(self.model, task, state, _first(sums), batch)
      return _lead(sums)

    return self._shard_map(f"accumulate_{task}", per_device, (P(), P(AXIS), P(AXIS)), P(AXIS), (1,))

  def _map_update(self):
    mean = functools.partial(jax.lax.pmean, axis_name=AXIS)

    def per_device(state, sums):
      state, sums = update(state, _first(sums), self.iter_size, mean)
      return state, _lead(sums)

    return self._shard_map("update", per_device, (P(), P(AXIS)), (P(), P(AXIS)), (0, 1))

  def _map_read(self):
    mean = functools.partial(jax.lax.pmean, axis_name=AXIS)

    def per_device(sums):
      sums, metrics = read_metrics(_first(sums), mean)
      return _lead(sums), metrics

    return self._shard_map("read_metrics", per_device, (P(AXIS),), (P(AXIS), P()), (0,))


class JitTrainer(_MeshTrainer):
  """Plain `jax.jit` with shardings. Each gradient program sees the global batch as
  [devices, per_device, ...] (sharded on the first axis), vmaps the per-device loss
  over it and differentiates their mean, so the loss is normalised and class-balanced
  per device as under pmap; XLA all-reduces that gradient inside the program.

  So this mode runs one all-reduce per *call*, `iter_size` per update: holding
  per-device partial gradients across programs in plain jit needs `reduced` /
  `unreduced` shardings, which JAX 0.10 does not implement for convolutions
  (NotImplementedError), and a vmapped per-device gradient is mis-partitioned by
  XLA at one image per device. The gradient sum is replicated; the loss sums keep
  one slice per device.
  """

  def _sums_sharding(self):
    return GradSum(grads=self.replicated, loss_sums=self.split, calls=self.split)

  def init_sums(self, state):
    n = len(self.devices)

    def make(params):
      sums = zero_sums(self.model, params)
      per_device = lambda x: jnp.broadcast_to(x, (n,))
      return sums.replace(
        loss_sums=jax.tree_util.tree_map(per_device, sums.loss_sums),
        calls=jax.tree_util.tree_map(per_device, sums.calls),
      )

    return jax.jit(make, out_shardings=self._sums_sharding())(state.params)

  def _map_accumulate(self, task):
    n = len(self.devices)

    def per_batch(state, sums, batch):
      split = jax.tree_util.tree_map(
        lambda x: jax.lax.with_sharding_constraint(x.reshape((n, -1) + x.shape[1:]), self.split),
        batch,
      )

      def objective(params):
        per_device = jax.vmap(
          lambda part: _finite_or_nan(
            device_loss(self.model, task, params, state.batch_stats, part)
          )
        )(split)
        return jnp.mean(per_device), per_device

      grads, per_device = jax.grad(objective, has_aux=True)(state.params)
      return _added(sums, task, grads, per_device)

    return jax.jit(
      _named(f"accumulate_{task}", per_batch),
      in_shardings=(self.replicated, self._sums_sharding(), self.split),
      out_shardings=self._sums_sharding(),
      donate_argnums=(1,),
    )

  def _map_update(self):
    def step(state, sums):
      return update(state, sums, self.iter_size, lambda grads: grads)

    return jax.jit(
      _named("update", step),
      in_shardings=(self.replicated, self._sums_sharding()),
      out_shardings=(self.replicated, self._sums_sharding()),
      donate_argnums=(0, 1),
    )

  def _map_read(self):
    read = functools.partial(read_metrics, mean=_mean_over_devices)
    return jax.jit(
      _named("read_metrics", read),
      in_shardings=(self._sums_sharding(),),
      out_shardings=(self._sums_sharding(), self.replicated),
      donate_argnums=(0,),
    )


def _mean_over_devices(tree):
  return jax.tree_util.tree_map(lambda x: jnp.mean(x, axis=0), tree)


class _PmapProgram:
  """A pmapped function whose compilations are counted as `pmap(name)` (jax.pmap calls
  every program it makes `_fun`)."""

  def __init__(self, name, mapped):
    self.name, self.mapped = name, mapped

  def __call__(self, *args):
    with compilation.naming(self.name):
      return self.mapped(*args)

  def lower(self, *args):
    return self.mapped.lower(*args)


def _named(name, fn):
  """`fn` under the program name `name` (jit names programs after the function)."""

  def program(*args):
    return fn(*args)

  program.__name__ = program.__qualname__ = name
  return program


def _first(tree):
  return jax.tree_util.tree_map(lambda x: x[0], tree)


def _lead(tree):
  return jax.tree_util.tree_map(lambda x: x[None], tree)


def make_trainer(model, iter_size=1, parallel="pmap", devices=None):
  """The trainer of `parallel` mode ("pmap", "shard_map" or "jit") over `devices`
  (default: every device of every process)."""
  trainers = {"pmap": PmapTrainer, "shard_map": ShardMapTrainer, "jit": JitTrainer}
  if parallel not in trainers:
    raise ValueError(f"unknown parallel mode {parallel!r}; expected one of {MODES}")
  return trainers[parallel](model, iter_size, devices)
