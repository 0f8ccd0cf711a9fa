"""The training loop's overheads and memory (issue "Training loop for accelerators").

    python -m bench.train_loop [--updates 20] [--iter_size 10] [--memory]

1. Updates per second of the product's trainer (train/parallel.py, jit on one device)
   on the tiny model (1/8 width, one block per stage) at 112x112, batch 2,
   iter_size calls per update, batches already in host memory (no data
   pipeline), metrics read every `--log_every` updates; and the bytes each
   batch moves to the device (uint8 images and labels) against float32.
2. With `--pipeline`: the host pipeline's images/s on one thread (decode + flip +
   resize + batching, what one core gives; grain's `data.read_threads` and
   `data.worker_count` multiply it) for 300x400 JPEGs with PNG masks, native
   (batch 1) and fixed 320x320 (batch 8).
3. With `--memory`: XLA's compiled memory of the full ResNet-50 gradient program
   (arguments + temporaries; outputs alias the donated gradient sums) for the
   paper step (1x300x400) and the batched step (8x320x320), remat off and on,
   beside PyTorch's peak RSS growth over one training step of the reference
   model in a fresh process (weights, gradients, Adam state and activations).
"""

import argparse
import json
import os
import subprocess
import sys
import time

import jax
import numpy as np

import poolnet_jax
from poolnet_jax.train import step as step_lib
from poolnet_jax.train import parallel as parallel_lib
from bench import common

TINY = dict(width=0.125, stages=(1, 1, 1, 1))
MEMORY_SHAPES = ((1, 300, 400), (8, 320, 320))


def batch_bytes(batch, height, width):
  """(uint8 bytes, float32 bytes) of one batch of images and labels."""
  pixels = batch * height * width
  return pixels * 4, pixels * 4 * 4


def updates_per_second(updates, iter_size, log_every, size=112, batch=2):
  model = poolnet_jax.create_model("resnet50", **TINY)
  variables = jax.jit(model.init)(jax.random.PRNGKey(0), np.zeros((1, size, size, 3), np.float32))
  tx = step_lib.create_optimizer(variables["params"], 1e-4)
  trainer = parallel_lib.make_trainer(model, iter_size, "jit", devices=jax.devices()[:1])
  state = trainer.replicate(step_lib.TrainState.create(variables, tx))
  sums = trainer.init_sums(state)
  images, labels = common.uint8_inputs(common.Task("train", "resnet50", batch, size, size))
  host_batch = {"image": images, "label": labels}
  trainer.compile(state, sums, trainer.put(host_batch))

  def run(n):
    nonlocal state, sums
    for update in range(1, n + 1):
      for _ in range(iter_size):
        sums = trainer.call(state, sums, trainer.put(host_batch))
      state, sums = trainer.update(state, sums)
      if update % log_every == 0:
        sums, _ = trainer.read_metrics(sums)
    jax.block_until_ready(state.params)

  run(2)  # warm-up (read_metrics compiles here)
  start = time.perf_counter()
  run(updates)
  return updates / (time.perf_counter() - start)


def pipeline_images_per_second(mode, batch, batches=40):
  """Images/s of pipeline.train_iterator on one thread over a folder of JPEGs."""
  import tempfile  # pylint: disable=import-outside-toplevel
  from PIL import Image  # pylint: disable=import-outside-toplevel
  from poolnet_jax.data import FolderSource, pipeline  # pylint: disable=import-outside-toplevel

  rng = np.random.default_rng(0)
  with tempfile.TemporaryDirectory() as root:
    for k in range(32):
      for folder in ("img", "gt"):
        os.makedirs(os.path.join(root, folder), exist_ok=True)
      smooth = rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)
      Image.fromarray(smooth).resize((400, 300)).save(
        os.path.join(root, f"img/{k}.jpg"), quality=90
      )
      Image.fromarray((rng.uniform(size=(300, 400)) > 0.5).astype(np.uint8) * 255).save(
        os.path.join(root, f"gt/{k}.png")
      )
    source = FolderSource(os.path.join(root, "img"), os.path.join(root, "gt"))
    it = pipeline.train_iterator(
      source,
      mode=mode,
      batch_size=batch,
      num_devices=1,
      size=(320, 320),
      read_threads=1,
      prefetch=0,
    )
    next(it)
    start = time.perf_counter()
    for _ in range(batches):
      next(it)
    return batches * batch / (time.perf_counter() - start)


def jax_compiled_memory(remat, shape):
  """{"argument", "temp", "output", "alias"} bytes of the gradient program."""
  model = poolnet_jax.create_model("resnet50", remat=remat)
  batch, height, width = shape
  params = jax.eval_shape(model.init, jax.random.PRNGKey(0), np.zeros((1, 128, 128, 3), np.float32))
  variables = jax.tree_util.tree_map(lambda x: np.zeros(x.shape, x.dtype), params)
  tx = step_lib.create_optimizer(variables["params"], 1e-4)
  trainer = parallel_lib.make_trainer(model, 1, "jit", devices=jax.devices()[:1])
  state = trainer.replicate(step_lib.TrainState.create(variables, tx))
  sums = trainer.init_sums(state)
  images, labels = common.uint8_inputs(common.Task("train", "resnet50", batch, height, width))
  compiled = trainer.compile(state, sums, trainer.put({"image": images, "label": labels}))
  analysis = compiled["accumulate_saliency"].memory_analysis()
  return {
    "argument": analysis.argument_size_in_bytes,
    "temp": analysis.temp_size_in_bytes,
    "output": analysis.output_size_in_bytes,
    "alias": analysis.alias_size_in_bytes,
  }


TORCH_PEAK = """
import resource, sys, numpy as np, torch
from reference import torch_poolnet
torch.set_num_threads(2)
batch, height, width = map(int, sys.argv[1:4])
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
model = torch_poolnet.build("resnet50").train()
for m in model.modules():
  if isinstance(m, torch.nn.BatchNorm2d):
    m.eval(); m.weight.requires_grad_(False); m.bias.requires_grad_(False)
opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-4,
                       weight_decay=5e-4)
x = torch.randn(batch, 3, height, width); y = (torch.rand(batch, 1, height, width) > 0.5).float()
loss = torch.nn.functional.binary_cross_entropy_with_logits(model(x), y, reduction="sum")
loss.backward(); opt.step()
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) * 1024)
"""


def torch_peak_bytes(shape):
  out = subprocess.run(
    [sys.executable, "-c", TORCH_PEAK, *map(str, shape)], check=True, capture_output=True, text=True
  )
  return int(out.stdout.split()[-1])


def main():
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument("--updates", type=int, default=20)
  parser.add_argument("--iter_size", type=int, default=10)
  parser.add_argument("--log_every", type=int, default=50)
  parser.add_argument("--memory", action="store_true")
  parser.add_argument("--pipeline", action="store_true")
  parser.add_argument("--json")
  args = parser.parse_args()
  results = {"updates_per_s": updates_per_second(args.updates, args.iter_size, args.log_every)}
  uint8, float32 = batch_bytes(2, 112, 112)
  results["batch_bytes"] = {"uint8": uint8, "float32": float32}
  print(
    f"tiny model, batch 2 at 112x112, iter_size {args.iter_size}: "
    f"{results['updates_per_s']:.2f} updates/s; a batch moves {uint8} bytes "
    f"(float32 would be {float32})"
  )
  if args.pipeline:
    results["pipeline_images_per_s"] = {
      "native_batch1": pipeline_images_per_second("native", 1),
      "fixed_320_batch8": pipeline_images_per_second("fixed", 8, batches=10),
    }
    print(
      "host pipeline, one thread: "
      + ", ".join(f"{k} {v:.1f} images/s" for k, v in results["pipeline_images_per_s"].items())
    )
  if args.memory:
    results["memory"] = {}
    print(
      "| step | JAX remat off MB (args + temp) | JAX remat on MB | PyTorch peak RSS growth MB |"
    )
    print("| --- | --- | --- | --- |")
    for shape in MEMORY_SHAPES:
      row = {f"jax_remat_{flag}": jax_compiled_memory(flag, shape) for flag in (False, True)}
      row["torch_peak"] = torch_peak_bytes(shape)
      results["memory"]["x".join(map(str, shape))] = row
      mb = lambda m: (m["argument"] + m["temp"]) / 2**20
      print(
        f"| {'x'.join(map(str, shape))} | {mb(row['jax_remat_False']):.0f} | "
        f"{mb(row['jax_remat_True']):.0f} | {row['torch_peak'] / 2**20:.0f} |"
      )
  if args.json:
    with open(args.json, "w", encoding="utf-8") as f:
      json.dump(results, f, indent=2)


if __name__ == "__main__":
  main()
