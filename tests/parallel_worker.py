"""3 updates (iter_size 2) of a tiny PoolNet, each parallel mode, parameters saved (test_parallel.py).

    XLA_FLAGS=--xla_force_host_platform_device_count=4 python parallel_worker.py OUT_DIR MODEL

Writes OUT_DIR/<model>_<mode><devices>.npz for MODEL (resnet50 or resnet50_edge):
pmap on 1 device, pmap, shard_map (not for the joint model) and jit on 4, and OUT_DIR/<model>.json with the
programs compiled and (resnet50) the all-reduces in each program on 4 devices. The global batch (4 images
per call and task) is the same in every run; with D devices each gets 4 / D.
"""

import json
import os
import re
import sys

import flax
import jax
import numpy as np
import optax

import poolnet_jax
from poolnet_jax.runtime import compilation
from poolnet_jax.train import step as step_lib
from poolnet_jax.train import parallel as parallel_lib
from random_weights import random_variables

GLOBAL_BATCH, UPDATES, ITER_SIZE, SIZE, LEARNING_RATE = 4, 3, 2, 112, 1e-8
RUNS = (("pmap", 1), ("pmap", 4), ("shard_map", 4), ("jit", 4))
# The joint model skips shard_map: it runs pmap's per-device functions, which the plain
# model's shard_map run already compares; jit's joint path is its own (a vmapped loss).
JOINT_RUNS = (("pmap", 1), ("pmap", 4), ("jit", 4))


def batches(model, rng):
  """One call's host batch: uint8 images and labels, per task for joint models."""

  def one(edge):
    images = rng.integers(0, 256, (GLOBAL_BATCH, SIZE, SIZE, 3), dtype=np.uint8)
    labels = rng.choice(
      np.array([0, 255] if edge else [0, 90, 255], np.uint8), (GLOBAL_BATCH, SIZE, SIZE, 1)
    )
    return {"image": images, "label": labels}

  return {"saliency": one(False), "edge": one(True)} if model.edge else one(False)


def all_reduces(compiled):
  return len(re.findall(r"\ball-reduce(?:-start)?\(", compiled.as_text()))


def train(model, variables, mode, num_devices, out, hlo):
  # Plain SGD (lr 1e-8: the summed loss of order-1 activations has gradients near 1e5):
  # Adam's first steps move each weight by about lr * sign(g), which turns
  # float rounding of near-zero gradients into lr-sized differences.
  tx = optax.apply_if_finite(optax.sgd(LEARNING_RATE), step_lib.NEVER)
  initial = flax.traverse_util.flatten_dict(variables["params"], sep="/")
  trainer = parallel_lib.make_trainer(model, ITER_SIZE, mode, devices=jax.devices()[:num_devices])
  state = trainer.replicate(step_lib.TrainState.create(variables, tx))
  sums = trainer.init_sums(state)
  if hlo is not None:
    compiled = trainer.compile(state, sums, trainer.put(batches(model, np.random.default_rng(1))))
    hlo["accumulate"] = all_reduces(compiled["accumulate_saliency"])
    hlo["update"] = all_reduces(compiled["update"])
  rng = np.random.default_rng(0)
  before = compilation.snapshot()
  for _ in range(UPDATES):
    for _ in range(ITER_SIZE):
      sums = trainer.call(state, sums, trainer.put(batches(model, rng)))
    state, sums = trainer.update(state, sums)
  sums, metrics = trainer.read_metrics(sums)
  params = trainer.unreplicate(state).params
  flat = flax.traverse_util.flatten_dict(jax.device_get(params), sep="/")
  np.savez(
    out, loss=metrics["loss"], **flat, **{f"initial/{k}": np.asarray(v) for k, v in initial.items()}
  )
  programs = compilation.snapshot().minus(before).programs
  return {name: count for name, count in programs.items() if count}


def main(out_dir, name):
  hlo, programs = {}, {}
  model = poolnet_jax.create_model(name, width=0.125, stages=(1, 1, 1, 1), conv="xla")
  # Activations of order 1 (not the original's vanishing N(0, 0.01) init): otherwise most
  # gradients are sums of tiny terms that cancel, and any change of summation order
  # shows as relative noise.
  variables = random_variables(model, seed=1)
  for mode, devices in JOINT_RUNS if model.edge else RUNS:
    hlo.setdefault(mode, {})
    wanted = hlo[mode] if devices == 4 and name == "resnet50" else None
    programs[f"{name}_{mode}{devices}"] = train(
      model, variables, mode, devices, os.path.join(out_dir, f"{name}_{mode}{devices}.npz"), wanted
    )
  with open(os.path.join(out_dir, f"{name}.json"), "w", encoding="utf-8") as f:
    json.dump({"all_reduces": hlo, "programs": programs}, f)


if __name__ == "__main__":
  main(sys.argv[1], sys.argv[2])
