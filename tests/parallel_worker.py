"""3 training steps of a tiny PoolNet, three ways, parameters saved (for test_parallel.py).

    XLA_FLAGS=--xla_force_host_platform_device_count=4 python parallel_worker.py OUT_DIR

Writes OUT_DIR/{pmap1,pmap4,shard_map4}.npz: pmap on 1 device, pmap and
shard_map on 4. The global batch (4 images) is the same in every run; with D
devices each gets 4 / D.
"""

import os
import sys

import flax
import jax
import numpy as np
import optax

import poolnet_jax
from poolnet_jax.train import state as state_lib
from poolnet_jax.train import step as step_lib

GLOBAL_BATCH, STEPS, SIZE, LEARNING_RATE = 4, 3, 120, 1e-5


def train(model, variables, mode, num_devices, out):
  # Plain SGD: Adam's first steps move each weight by about lr * sign(g), which turns
  # float rounding of near-zero gradients into lr-sized differences.
  tx = optax.sgd(LEARNING_RATE)
  state = state_lib.TrainState.create(model.apply, variables, tx)
  initial = flax.traverse_util.flatten_dict(variables["params"], sep="/")
  step = step_lib.make_step(model, mode, devices=jax.devices()[:num_devices])
  state = step.replicate(state)
  rng = np.random.default_rng(0)
  for _ in range(STEPS):
    images = rng.normal(0, 50, (GLOBAL_BATCH, SIZE, SIZE, 3)).astype(np.float32)
    labels = (rng.uniform(size=(GLOBAL_BATCH, SIZE, SIZE, 1)) > 0.5).astype(np.float32)
    per_device = GLOBAL_BATCH // num_devices
    batch = {"image": images.reshape(num_devices, per_device, SIZE, SIZE, 3),
             "label": labels.reshape(num_devices, per_device, SIZE, SIZE, 1)}
    state, metrics = step(state, batch)
  params = step.unreplicate(state).params
  flat = flax.traverse_util.flatten_dict(jax.device_get(params), sep="/")
  np.savez(out, loss=step_lib.first_device_metrics(metrics)["loss"], **flat,
           **{f"initial/{k}": np.asarray(v) for k, v in initial.items()})


def main(out_dir):
  model = poolnet_jax.create_model("resnet50", width=0.125, stages=(1, 1, 1, 1))
  variables = model.init(jax.random.PRNGKey(0), np.zeros((1, SIZE, SIZE, 3), np.float32))
  for mode, devices in (("pmap", 1), ("pmap", 4), ("shard_map", 4)):
    train(model, variables, mode, devices, os.path.join(out_dir, f"{mode}{devices}.npz"))


if __name__ == "__main__":
  main(sys.argv[1])
