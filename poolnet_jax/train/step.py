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

This module holds what one device computes; train/parallel.py maps it over the
devices (pmap, shard_map or jit) and names the programs.
"""

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from poolnet_jax.imaging import image as image_lib
from poolnet_jax.train import losses

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
