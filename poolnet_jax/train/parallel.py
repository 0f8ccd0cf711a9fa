"""The training step over devices: data-parallel wrappers of train/step.py's per-device
functions, each program named for poolnet_jax.runtime.compilation.

    trainer = make_trainer(model, iter_size=10, parallel="pmap")
    state = trainer.replicate(state)  # a TrainState (train/step.py)
    sums = trainer.init_sums(state)
    sums = trainer.call(state, sums, trainer.put(batch))  # iter_size times
    state, sums = trainer.update(state, sums)

`PmapTrainer` (`jax.pmap`, the default) and `ShardMapTrainer` (`jax.shard_map`
on a 1-D mesh) keep the gradient sums as [devices, ...] arrays, one slice per
device: the gradient programs hold no collective, the update one all-reduce.
`JitTrainer` (`jax.jit` with `NamedSharding`: the batch sharded along its
leading axis, the state replicated) lets XLA all-reduce every call's gradient, so
it is one all-reduce per update only at iter_size 1 (see its docstring).
`DevicePrefetch` puts the batches on the devices ahead of the step that takes them.
"""

import collections
import functools

import jax
import jax.numpy as jnp
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
import numpy as np

from poolnet_jax.runtime import compilation
from poolnet_jax.train import step as step_lib


AXIS = "data"
MODES = ("pmap", "shard_map", "jit")


class _Trainer:
  """What every wrapper offers; subclasses say where arrays live and how they are mapped.

  `accumulate(state, sums, batch, task)` and `update(state, sums)` donate what they
  replace. The programs are named `accumulate_<task>`, `update` and `read_metrics`
  (what poolnet_jax.runtime.compilation counts them by: `jit(...)`, `pmap(...)` under pmap).
  """

  def __init__(self, model, iter_size, devices):
    self.model, self.iter_size = model, iter_size
    self.devices = list(devices) if devices is not None else jax.devices()
    self.local_devices = [d for d in self.devices if d.process_index == jax.process_index()]
    self._accumulate = {task: self._map_accumulate(task) for task in step_lib.tasks_of(model)}
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

  def programs(self, state, sums, batch):
    """{name: (program, args)} of a call with `batch` and an update: what `compile`
    compiles. Arrays or `jax.ShapeDtypeStruct`s (bench/aot.py lowers these for
    compile-only TPU and GPU devices)."""
    batches = batch if self.model.edge else {"saliency": batch}
    programs = {
      f"accumulate_{task}": (self._accumulate[task], (state, sums, part))
      for task, part in batches.items()
    }
    programs["update"] = (self._update, (state, sums))
    return programs

  def compile(self, state, sums, batch):
    """Compiles ahead of time the programs a call with `batch` (shapes only) and an update
    need: {name: jax.stages.Compiled}; later calls of those shapes compile nothing."""
    compiled = {}
    for name, (program, args) in self.programs(state, sums, batch).items():
      with compilation.naming(name):
        compiled[name] = program.lower(*args).compile()
    return compiled

  def nonfinite_updates(self, state):
    return int(np.asarray(step_lib.nonfinite_updates(state).addressable_data(0)).reshape(-1)[0])


class PmapTrainer(_Trainer):
  """`jax.pmap` over the devices (default: all of them, of every process); the state and
  the sums carry a leading local-device axis; batches are split [devices, per_device]."""

  def _map_accumulate(self, task):
    return self._pmap(
      f"accumulate_{task}", functools.partial(step_lib.accumulate, self.model, task), donate=(1,)
    )

  def _map_update(self):
    mean = functools.partial(jax.lax.pmean, axis_name=AXIS)
    return self._pmap(
      "update",
      functools.partial(step_lib.update, iter_size=self.iter_size, mean=mean),
      donate=(0, 1),
    )

  def _map_read(self):
    mean = functools.partial(jax.lax.pmean, axis_name=AXIS)
    return self._pmap(
      "read_metrics", functools.partial(step_lib.read_metrics, mean=mean), donate=(0,)
    )

  def _pmap(self, name, fn, donate):
    mapped = jax.pmap(fn, AXIS, devices=self._pmap_devices(), donate_argnums=donate)
    return _PmapProgram(name, mapped)

  def _pmap_devices(self):
    # None (every device of every process) only where those are the devices: a list of
    # other devices (compile-only ones of another platform, bench/aot.py) is passed on.
    return None if list(self.devices) == jax.devices() else self.devices

  @property
  def _sharding(self):
    return NamedSharding(Mesh(np.asarray(self.local_devices), (AXIS,)), P(AXIS))

  def _stack(self, x):
    x = np.asarray(x)
    return jax.device_put(np.broadcast_to(x, (len(self.local_devices),) + x.shape), self._sharding)

  def replicate(self, state):
    return jax.tree_util.tree_map(self._stack, state)

  def init_sums(self, state):
    return self.replicate(
      jax.device_get(step_lib.zero_sums(self.model, self.unreplicate(state).params))
    )

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
        lambda x: jnp.broadcast_to(x, (n,) + x.shape), step_lib.zero_sums(self.model, params)
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
      sums = step_lib.accumulate(self.model, task, state, _first(sums), batch)
      return _lead(sums)

    return self._shard_map(f"accumulate_{task}", per_device, (P(), P(AXIS), P(AXIS)), P(AXIS), (1,))

  def _map_update(self):
    mean = functools.partial(jax.lax.pmean, axis_name=AXIS)

    def per_device(state, sums):
      state, sums = step_lib.update(state, _first(sums), self.iter_size, mean)
      return state, _lead(sums)

    return self._shard_map("update", per_device, (P(), P(AXIS)), (P(), P(AXIS)), (0, 1))

  def _map_read(self):
    mean = functools.partial(jax.lax.pmean, axis_name=AXIS)

    def per_device(sums):
      sums, metrics = step_lib.read_metrics(_first(sums), mean)
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
    return step_lib.GradSum(grads=self.replicated, loss_sums=self.split, calls=self.split)

  def init_sums(self, state):
    n = len(self.devices)

    def make(params):
      sums = step_lib.zero_sums(self.model, params)
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
          lambda part: step_lib.finite_or_nan(
            step_lib.device_loss(self.model, task, params, state.batch_stats, part)
          )
        )(split)
        return jnp.mean(per_device), per_device

      grads, per_device = jax.grad(objective, has_aux=True)(state.params)
      return step_lib.add_to_sums(sums, task, grads, per_device)

    return jax.jit(
      _named(f"accumulate_{task}", per_batch),
      in_shardings=(self.replicated, self._sums_sharding(), self.split),
      out_shardings=self._sums_sharding(),
      donate_argnums=(1,),
    )

  def _map_update(self):
    def apply_update(state, sums):
      return step_lib.update(state, sums, self.iter_size, lambda grads: grads)

    return jax.jit(
      _named("update", apply_update),
      in_shardings=(self.replicated, self._sums_sharding()),
      out_shardings=(self.replicated, self._sums_sharding()),
      donate_argnums=(0, 1),
    )

  def _map_read(self):
    read = functools.partial(step_lib.read_metrics, mean=_mean_over_devices)
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


class DevicePrefetch:
  """Iterates `put(batch)` of `iterator`'s batches, `size` of them in flight.

  JAX transfers asynchronously, so the next batches cross to the devices while
  the current step runs. `get_state()` is the data state after the batches
  taken so far (not those in flight): what a checkpoint must hold.
  """

  def __init__(self, iterator, put, size=2):
    self.iterator, self.put, self.size = iterator, put, max(int(size), 1)
    self._queue = collections.deque()
    self._state = iterator.get_state()

  def __iter__(self):
    return self

  def __next__(self):
    while len(self._queue) < self.size:
      batch = self.put(next(self.iterator))
      self._queue.append((batch, self.iterator.get_state()))
    batch, self._state = self._queue.popleft()
    return batch

  def get_state(self):
    return self._state

  def set_state(self, state):
    self._queue.clear()
    self.iterator.set_state(state)
    self._state = self.iterator.get_state()
