"""Train state and the original's optimizer: Adam with L2 on trainable parameters only."""

from typing import Any

import flax
import jax
import jax.numpy as jnp
import optax
from flax import struct


NEVER = 2**31 - 1  # apply_if_finite's consecutive errors before it gives up: never


class TrainState(struct.PyTreeNode):
  """Everything an update changes; `step` counts updates. BatchNorm statistics ride
  along, never updated."""

  step: jax.Array
  params: Any
  batch_stats: Any
  opt_state: Any
  tx: Any = struct.field(pytree_node=False)

  @classmethod
  def create(cls, variables, tx):
    params = variables["params"]
    return cls(
      step=jnp.zeros((), jnp.int32),
      params=params,
      batch_stats=variables.get("batch_stats", {}),
      opt_state=tx.init(params),
      tx=tx,
    )

  @property
  def variables(self):
    if self.batch_stats:
      return {"params": self.params, "batch_stats": self.batch_stats}
    return {"params": self.params}

  def apply_gradients(self, grads):
    updates, opt_state = self.tx.update(grads, self.opt_state, self.params)
    return self.replace(
      step=self.step + 1, params=optax.apply_updates(self.params, updates), opt_state=opt_state
    )


def trainable_mask(params):
  """False for BatchNorm scale and bias (frozen, as in the original), True elsewhere."""
  flat = flax.traverse_util.flatten_dict(params)
  batchnorm = {path[:-1] for path in flat if path[-1] == "scale"}
  return flax.traverse_util.unflatten_dict({path: path[:-1] not in batchnorm for path in flat})


def learning_rate_schedule(base_lr, decay_steps=(), factor=0.1, warmup_steps=0):
  """Step schedule: `base_lr`, multiplied by `factor` at each step in `decay_steps`.

  With `warmup_steps` > 0 the rate first rises linearly from 0 to `base_lr`
  (`decay_steps` still count from update 0).
  """
  if not decay_steps:
    schedule = optax.constant_schedule(base_lr)
  else:
    schedule = optax.piecewise_constant_schedule(
      base_lr, {max(int(s) - max(warmup_steps, 0), 0): factor for s in decay_steps}
    )
  return _with_warmup(schedule, base_lr, warmup_steps)


def cosine_schedule(peak_lr, total_steps, warmup_steps=0, end_factor=0.0):
  """Linear warmup from 0 to `peak_lr`, then cosine decay to `end_factor * peak_lr`
  at `total_steps` (warmup included)."""
  cosine = optax.cosine_decay_schedule(peak_lr, max(total_steps - warmup_steps, 1), end_factor)
  return _with_warmup(cosine, peak_lr, warmup_steps)


def _with_warmup(schedule, peak_lr, warmup_steps):
  """`schedule` (counted from the warmup's end) after a linear ramp 0 -> `peak_lr`."""
  if warmup_steps <= 0:
    return schedule
  ramp = optax.linear_schedule(0.0, peak_lr, warmup_steps)
  return optax.join_schedules([ramp, schedule], [warmup_steps])


def create_optimizer(params, learning_rate, weight_decay=5e-4, reset_moments_at=(), clip_norm=0.0):
  """`torch.optim.Adam(lr, weight_decay)` on trainable parameters, frozen BN untouched.

  The weight decay is added to the gradient before Adam (L2, not AdamW).
  `reset_moments_at` lists update counts at which Adam's moments restart, as the
  original rebuilds its optimizer when it lowers the learning rate. With
  `clip_norm` > 0 the gradient of the trainable parameters is first scaled down
  to a global norm of at most `clip_norm`. An update whose gradient is not
  finite is skipped and counted (`optax.apply_if_finite`; its `total_notfinite`).
  The original's iter_size is the training step's business (train/step.py):
  this sees one averaged gradient per update.
  """
  adam = optax.chain(optax.add_decayed_weights(weight_decay), optax.scale_by_adam(eps=1e-8))
  if clip_norm > 0:
    adam = optax.chain(optax.clip_by_global_norm(clip_norm), adam)
  if reset_moments_at:
    adam = _with_moment_resets(adam, reset_moments_at)
  adam = optax.chain(adam, optax.scale_by_learning_rate(learning_rate))
  tx = optax.multi_transform({True: adam, False: optax.set_to_zero()}, trainable_mask(params))
  return optax.apply_if_finite(tx, max_consecutive_errors=NEVER)


def _with_moment_resets(inner, reset_at):
  """Restarts `inner`'s state (moments and bias correction) at the given update counts."""
  reset_at = jnp.asarray(sorted(reset_at), jnp.int32)

  def init(params):
    return (jnp.zeros((), jnp.int32), inner.init(params))

  def update(updates, state, params=None):
    count, inner_state = state
    fresh = inner.init(params)
    restart = jnp.any(count == reset_at)
    inner_state = jax.tree_util.tree_map(lambda f, s: jnp.where(restart, f, s), fresh, inner_state)
    updates, inner_state = inner.update(updates, inner_state, params)
    return updates, (count + 1, inner_state)

  return optax.GradientTransformation(init, update)
