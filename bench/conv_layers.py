"""Where the train step's time goes: one 3x3 convolution, forward and both gradients.

    python -m bench.conv_layers [--threads 2] [--repeats 10]

For layer shapes that dominate PoolNet at 300x400, times in JAX (XLA's
convolution and the Winograd path) and in PyTorch: the forward pass, the
gradient with respect to the input and with respect to the kernel. The
train-step gap in BENCHMARKS.md is read off this table.
"""

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
import torch

from bench import common
from poolnet_jax.models import layers

# (name, H, W, C in, C out): decoder FAMs at 1/4 and 1/8 resolution, a ResNet stage-3 3x3.
SHAPES = (
  ("FAM 1/4", 75, 100, 256, 256),
  ("FAM 1/8", 38, 50, 512, 512),
  ("stage-3", 38, 50, 256, 256),
)


def _median_seconds(run, repeats):
  run()
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    run()
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def jax_times(shape, algorithm, repeats):
  """{"forward", "input grad", "kernel grad"}: median seconds of jitted JAX functions."""
  _, h, w, cin, cout = shape
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(1, h, w, cin)), jnp.float32)
  k = jnp.asarray(rng.normal(size=(3, 3, cin, cout)) * 0.01, jnp.float32)
  conv = lambda x, k: layers.convolve(x, k, padding=1, impl=layers.conv_impl(algorithm))
  loss = lambda x, k: jnp.sum(conv(x, k) ** 2)
  functions = {
    "forward": jax.jit(conv),
    "input grad": jax.jit(jax.grad(loss, 0)),
    "kernel grad": jax.jit(jax.grad(loss, 1)),
  }
  return {
    name: _median_seconds(lambda f=f: f(x, k).block_until_ready(), repeats)
    for name, f in functions.items()
  }


def torch_times(shape, repeats):
  _, h, w, cin, cout = shape
  x = torch.randn(1, cin, h, w)
  k = torch.randn(cout, cin, 3, 3) * 0.01
  conv = lambda x, k: torch.nn.functional.conv2d(x, k, padding=1)

  def grad(index):
    xs, ks = x.clone().requires_grad_(index == 0), k.clone().requires_grad_(index == 1)
    (conv(xs, ks) ** 2).sum().backward()

  def forward():
    with torch.no_grad():
      conv(x, k)

  return {
    "forward": _median_seconds(forward, repeats),
    "input grad": _median_seconds(lambda: grad(0), repeats),
    "kernel grad": _median_seconds(lambda: grad(1), repeats),
  }


def main():
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument("--threads", type=int, default=2)
  parser.add_argument("--repeats", type=int, default=10)
  args = parser.parse_args()
  common.pin_cpus(args.threads)
  torch.set_num_threads(args.threads)
  print("| layer | what | XLA conv ms | Winograd ms | PyTorch ms |")
  print("| --- | --- | --- | --- | --- |")
  for shape in SHAPES:
    xla, fast = jax_times(shape, "xla", args.repeats), jax_times(shape, "fast", args.repeats)
    reference = torch_times(shape, args.repeats)
    for what in ("forward", "input grad", "kernel grad"):
      print(
        f"| {shape[0]} {shape[3]}->{shape[4]} {shape[1]}x{shape[2]} | {what} | "
        f"{1e3 * xla[what]:.1f} | {1e3 * fast[what]:.1f} | {1e3 * reference[what]:.1f} |"
      )


if __name__ == "__main__":
  main()
