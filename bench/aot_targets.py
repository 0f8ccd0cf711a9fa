"""Compile-only accelerators for bench.aot: TPU topologies from libtpu, NVIDIA GPUs from
XLA target configs (`gpu_specs/*.txtpb`), no chip needed.

The backends come from `requirements-aot.txt`: libtpu and the CUDA 13 PJRT plugin with
the ptxas and libdevice wheels, not the CUDA runtime libraries (nothing runs), installed
into `.aot-backends/` (`pip install --no-deps --target .aot-backends -r
requirements-aot.txt`), which `use_backends` puts on sys.path, or into the environment
(the `aot` extra). Installed there, JAX would try to start them in every process; in a
folder of their own only bench.aot sees them. JAX itself stays on the CPU
(`prepare_environment` sets JAX_PLATFORMS=cpu before JAX starts), so the plugins are
loaded for their compilers only.

Memory and peak figures are the chips' published ones; `usable` is what one JAX
process may allocate: all of a TPU's HBM, 75 % of a GPU's (JAX's default
XLA_PYTHON_CLIENT_MEM_FRACTION).
"""

import dataclasses
import importlib.util
import os
import sys

GIB = 2**30
HERE = os.path.dirname(os.path.abspath(__file__))
SPECS = os.path.join(HERE, "gpu_specs")
BACKENDS = os.path.join(os.path.dirname(HERE), ".aot-backends")
GPU_MEMORY_FRACTION = 0.75


@dataclasses.dataclass(frozen=True)
class Target:
  """One chip type. `topologies`: chips -> topology name (TPU) or "slices x hosts x
  devices" (GPU); `bf16_flops`: peak dense bfloat16 FLOP/s per chip."""

  name: str
  platform: str  # "tpu" or "cuda"
  memory_bytes: int
  bf16_flops: float
  topologies: dict
  spec: str = ""  # GPU target config file in gpu_specs/

  @property
  def device_platform(self):
    """What its JAX devices call their platform."""
    return {"cuda": "gpu"}.get(self.platform, self.platform)

  @property
  def usable_bytes(self):
    fraction = GPU_MEMORY_FRACTION if self.platform == "cuda" else 1.0
    return int(self.memory_bytes * fraction)

  def admits(self, total_bytes):
    """Whether a program that compiled, needing `total_bytes` a chip, fits. XLA:GPU compiles
    what does not fit, so the bytes decide; libtpu refuses what it cannot place (at compile
    time, RESOURCE_EXHAUSTED) by an accounting that admits sums past the HBM: what it
    compiled fits."""
    return self.platform == "tpu" or total_bytes <= self.usable_bytes


TARGETS = {
  "v5e": Target("v5e", "tpu", 16 * GIB, 197e12, {1: "v5e:1x1", 4: "v5e:2x2", 8: "v5e:2x4"}),
  "v5p": Target("v5p", "tpu", 95 * GIB, 459e12, {1: "v5p:1x1x1", 4: "v5p:2x2x1", 8: "v5p:2x2x2"}),
  "v6e": Target("v6e", "tpu", 32 * GIB, 918e12, {1: "v6e:1x1", 4: "v6e:2x2", 8: "v6e:2x4"}),
  "h100": Target(
    "h100", "cuda", 84978434048, 989e12, {1: "1x1x1", 4: "1x1x4", 8: "1x1x8"}, "h100.txtpb"
  ),
  "h200": Target(
    "h200", "cuda", 143771 * 2**20, 989e12, {1: "1x1x1", 4: "1x1x4", 8: "1x1x8"}, "h200.txtpb"
  ),
}
TINY_TARGETS = ("v5e", "h100")


def use_backends(directory=BACKENDS):
  """Puts a `pip install --target` folder of backends first on sys.path (before JAX is
  imported: JAX looks for its plugins once); returns whether it exists."""
  if not os.path.isdir(directory):
    return False
  if directory not in sys.path:
    sys.path.insert(0, directory)
  return True


def prepare_environment(environ=os.environ):
  """Before JAX starts: JAX on the CPU (the plugins serve their compilers only), CUDA's
  version checks off (there is no driver), libtpu's host discovery quiet."""
  environ["JAX_PLATFORMS"] = "cpu"
  environ.setdefault("JAX_SKIP_CUDA_CONSTRAINTS_CHECK", "1")
  environ.setdefault("TPU_SKIP_MDS_QUERY", "1")
  # libtpu looks for a TPU host at start and logs pages when there is none; named, it
  # is quiet. Only discovery reads them: every topology still compiles for its own chip.
  environ.setdefault("TPU_WORKER_HOSTNAMES", "localhost")
  environ.setdefault("TPU_ACCELERATOR_TYPE", "v5litepod-1")
  # libtpu locks a file so that one process at a time owns the chips; there are none.
  environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")
  environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def missing_backend(platform):
  """Why `platform`'s compile-only backend cannot be used here (None: it can)."""
  module = {"tpu": "libtpu", "cuda": "jax_plugins.xla_cuda13"}[platform]
  try:
    found = importlib.util.find_spec(module) is not None
  except ModuleNotFoundError:
    found = False
  if found:
    return None
  return (
    f"{module} is not installed: pip install --no-deps --target .aot-backends -r "
    "requirements-aot.txt (the compile-only TPU and CUDA backends)"
  )


def devices(target, chips):
  """`chips` compile-only devices of `target`."""
  from jax.experimental import topologies  # pylint: disable=import-outside-toplevel

  topology = target.topologies[chips]
  if target.platform == "tpu":
    # A topology smaller than one host names its host bounds (the default host is 2x2).
    extra = {"chips_per_host_bounds": [1, 1, 1]} if chips == 1 else {}
    desc = topologies.get_topology_desc(topology_name=topology, platform="tpu", **extra)
  else:
    with open(os.path.join(SPECS, target.spec), encoding="utf-8") as f:
      config = f.read()
    desc = topologies.get_topology_desc(platform="cuda", topology=topology, target_config=config)
  found = list(desc.devices)
  if len(found) != chips:
    raise RuntimeError(f"{target.name} topology {topology} has {len(found)} devices, not {chips}")
  return found


TRITON_TILING = "Couldn't find output tile sizes"
NO_TRITON_GEMM = {"xla_gpu_enable_triton_gemm": False}


def compile_lowered(lowered, target):
  """(compiled, compiler options it needed). XLA:GPU without autotuning finds no Triton
  tiling for some small products (the pyramid pooling's at 300x400 and 320x320): those
  programs compile again with cuBLAS instead of Triton GEMMs, and the options say so."""
  try:
    return lowered.compile(), None
  except Exception as error:  # pylint: disable=broad-except
    if target.platform != "cuda" or TRITON_TILING not in str(error):
      raise
  return lowered.compile(compiler_options=NO_TRITON_GEMM), NO_TRITON_GEMM
