"""The per-device training step and its two data-parallel wrappers (pmap, shard_map).

Batches are laid out [devices, per_device_batch, H, W, C] for both wrappers.
Plain models take {"image", "label"}; edge models {"saliency": {...}, "edge": {...}}.
"""

import functools

import jax
import numpy as np
from flax import jax_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from poolnet_jax.train import losses

AXIS = "batch"


def _variables(params, batch_stats):
  return {"params": params, "batch_stats": batch_stats} if batch_stats else {"params": params}


def compute_loss(model, params, batch_stats, batch):
  """Loss per image as the original normalises it (before iter_size), and metrics."""
  variables = _variables(params, batch_stats)
  if not model.edge:
    logits = model.apply(variables, batch["image"])
    loss = losses.saliency_loss(logits, batch["label"]) / batch["image"].shape[0]
    return loss, {"loss": loss}
  edge, saliency = batch["edge"], batch["saliency"]
  fused, sides = model.apply(variables, edge["image"], mode="edge")
  edge_loss = losses.edge_loss(fused, sides, edge["label"]) / edge["image"].shape[0]
  logits = model.apply(variables, saliency["image"])
  saliency_loss = losses.saliency_loss(logits, saliency["label"]) / saliency["image"].shape[0]
  loss = edge_loss + saliency_loss
  return loss, {"loss": loss, "edge_loss": edge_loss, "saliency_loss": saliency_loss}


def train_step(state, batch, model, axis_name=AXIS):
  """One call: gradients averaged over devices, then the optimizer (which may
  only accumulate, under the original's iter_size)."""
  grad_fn = jax.value_and_grad(compute_loss, argnums=1, has_aux=True)
  (_, metrics), grads = grad_fn(model, state.params, state.batch_stats, batch)
  grads = jax.lax.pmean(grads, axis_name)
  metrics = jax.lax.pmean(metrics, axis_name)
  return state.apply_gradients(grads), metrics


class PmapStep:
  """`jax.pmap` of the step; the state carries a leading device axis."""

  def __init__(self, model, devices=None):
    # devices=None: every device of every process, so pmean spans all hosts.
    self.devices = devices
    self._step = jax.pmap(functools.partial(train_step, model=model), axis_name=AXIS,
                          devices=devices, donate_argnums=(0,))

  def replicate(self, state):
    local = [d for d in self.devices if d.process_index == jax.process_index()] \
        if self.devices else jax.local_devices()
    return jax_utils.replicate(state, local)

  def unreplicate(self, state):
    return jax.tree_util.tree_map(lambda x: x[0], state)

  def __call__(self, state, batch):
    return self._step(state, batch)


class ShardMapStep:
  """`jax.shard_map` of the same step on a 1-D mesh; the state is replicated."""

  def __init__(self, model, devices=None):
    self.devices = devices or jax.devices()
    self.mesh = Mesh(np.asarray(self.devices), (AXIS,))

    def per_device(state, batch):
      batch = jax.tree_util.tree_map(lambda x: x[0], batch)
      state, metrics = train_step(state, batch, model)
      return state, jax.tree_util.tree_map(lambda m: m[None], metrics)

    # check_vma=False: the step averages gradients itself (pmean), as under pmap;
    # with it on, JAX would also psum the gradients of the replicated state.
    sharded = jax.shard_map(per_device, mesh=self.mesh, in_specs=(P(), P(AXIS)),
                            out_specs=(P(), P(AXIS)), check_vma=False)
    self._step = jax.jit(sharded, donate_argnums=(0,))

  def replicate(self, state):
    sharding = NamedSharding(self.mesh, P())
    return jax.tree_util.tree_map(
        lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), state)

  def unreplicate(self, state):
    return jax.tree_util.tree_map(lambda x: np.asarray(x.addressable_data(0)), state)

  def __call__(self, state, batch):
    sharding = NamedSharding(self.mesh, P(AXIS))  # each process holds its own devices' rows
    batch = jax.tree_util.tree_map(
        lambda x: jax.make_array_from_process_local_data(sharding, x), batch)
    return self._step(state, batch)


def make_step(model, parallel="pmap", devices=None):
  if parallel == "pmap":
    return PmapStep(model, devices)
  if parallel == "shard_map":
    return ShardMapStep(model, devices)
  raise ValueError(f"unknown parallel mode {parallel!r}; expected 'pmap' or 'shard_map'")


def first_device_metrics(metrics):
  """Metrics (identical on every device after pmean) as Python floats."""
  return {k: float(np.asarray(v.addressable_data(0)).reshape(-1)[0]) for k, v in metrics.items()}
