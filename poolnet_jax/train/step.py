"""The per-device training step: gradients summed on the device, averaged once per update.

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

This module holds what one device computes, with the state it updates (TrainState, the
original's optimizer: Adam with L2 on the trainable parameters) and the original's
losses; train/parallel.py maps it over the devices (pmap, shard_map or jit) and names
the programs.
"""

from typing import Any

from flax import struct
import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax

from poolnet_jax.imaging import image as image_lib


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


def saliency_loss(logits, labels):
  """Binary cross-entropy with logits summed over pixels and images."""
  return jnp.sum(optax.sigmoid_binary_cross_entropy(logits, labels))


def balanced_edge_loss(logits, labels):
  """Class-balanced BCE, summed.

  With P pixels equal to 1 and N equal to 0 (T = P + N) in the batch, as the
  original counts them: weight N/T on the ones, 1.1 * P/T on the zeros and 0 on
  every other value.
  """
  positive = (labels == 1).astype(jnp.float32)
  negative = (labels == 0).astype(jnp.float32)
  num_pos, num_neg = jnp.sum(positive), jnp.sum(negative)
  total = jnp.maximum(num_pos + num_neg, 1.0)
  weights = positive * num_neg / total + negative * 1.1 * num_pos / total
  return jnp.sum(weights * optax.sigmoid_binary_cross_entropy(logits, labels))


def edge_loss(fused, sides, labels):
  """Balanced BCE of the fused output plus every side output."""
  return sum(balanced_edge_loss(out, labels) for out in [fused, *sides])


TASKS = ("saliency", "edge")


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
    return edge_loss(fused, sides, labels) / images.shape[0]
  return saliency_loss(model.apply(variables, images), labels) / images.shape[0]


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


def finite_or_nan(loss):
  """`loss`, whose gradient turns NaN where the loss is not finite (so the update that
  follows sees it on every device and skips: optax.apply_if_finite)."""
  return loss * jnp.where(jnp.isfinite(jax.lax.stop_gradient(loss)), 1.0, jnp.nan)


def accumulate(model, task, state, sums, batch):
  """Adds one batch's local gradient and loss to `sums` (no collective)."""
  loss, grads = jax.value_and_grad(
    lambda params: finite_or_nan(device_loss(model, task, params, state.batch_stats, batch))
  )(state.params)
  return add_to_sums(sums, task, grads, loss)


def add_to_sums(sums, task, grads, loss):
  """`sums` with one batch's gradient and loss added."""
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
