"""runtime.apply_xla_defaults: which flags it adds, and that XLA really takes them."""

import json
import os
import subprocess
import sys

from poolnet_jax import runtime

YNN = "--xla_cpu_experimental_ynn_fusion_type"
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_adds_the_defaults_to_the_users_flags():
  environ = {"XLA_FLAGS": "--xla_force_host_platform_device_count=4", "JAX_PLATFORMS": "cpu"}
  assert runtime.apply_xla_defaults(environ) == f"--xla_force_host_platform_device_count=4 {YNN}="
  assert environ["XLA_FLAGS"] == f"--xla_force_host_platform_device_count=4 {YNN}="
  assert runtime.apply_xla_defaults({}, plugin_installed=False) == f"{YNN}="


def test_the_cpu_flags_only_when_jax_runs_on_the_cpu():
  """XLA:CPU's flags would reach a GPU's or TPU's XLA too, which may refuse them."""
  for platforms in ("cuda", "tpu", "gpu,cpu"):
    environ = {"XLA_FLAGS": "--xla_dump_to=/tmp/x", "JAX_PLATFORMS": platforms}
    assert runtime.apply_xla_defaults(environ) == "--xla_dump_to=/tmp/x"
    assert environ["XLA_FLAGS"] == "--xla_dump_to=/tmp/x"
  # No $JAX_PLATFORMS: an installed accelerator plugin means JAX may start on it.
  assert runtime.apply_xla_defaults({}, plugin_installed=True) == ""
  assert runtime.apply_xla_defaults({"JAX_PLATFORMS": "cpu"}, plugin_installed=True) == f"{YNN}="
  assert runtime.starts_on_cpu({"JAX_PLATFORMS": "cpu,cuda"}) and not runtime.starts_on_cpu(
    {}, plugin_installed=True
  )


def test_the_users_value_wins_and_the_defaults_can_be_switched_off():
  environ = {"XLA_FLAGS": f"{YNN}=dot", "JAX_PLATFORMS": "cpu"}
  assert runtime.apply_xla_defaults(environ) == f"{YNN}=dot"
  environ = {"XLA_FLAGS": "--xla_dump_to=/tmp/x", "POOLNET_JAX_XLA_DEFAULTS": "0"}
  assert runtime.apply_xla_defaults(environ) == "--xla_dump_to=/tmp/x"
  assert environ["XLA_FLAGS"] == "--xla_dump_to=/tmp/x"


PROGRAM = """
import json, jax, jax.numpy as jnp
from poolnet_jax import runtime
runtime.apply_xla_defaults()
x, k = jnp.ones((1, 64, 64, 64)), jnp.ones((3, 3, 64, 64))
conv = lambda x, k: jax.lax.conv_general_dilated(x, k, (1, 1), "SAME",
    dimension_numbers=("NHWC", "HWIO", "NHWC"))
print(json.dumps({"ynn": "ynn_fusion" in jax.jit(conv).lower(x, k).compile().as_text()}))
"""


def _uses_ynn(**env):
  environ = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  environ.update(PYTHONPATH=REPO, POOLNET_JAX_CACHE="", **env)
  out = subprocess.run(
    [sys.executable, "-c", PROGRAM], env=environ, capture_output=True, text=True, check=True
  ).stdout
  return json.loads(out.strip().splitlines()[-1])["ynn"]


def test_xla_takes_the_defaults_before_the_first_computation():
  """This jaxlib fuses convolutions into YNNPACK calls by default; the defaults turn that off."""
  assert _uses_ynn(POOLNET_JAX_XLA_DEFAULTS="0")
  assert not _uses_ynn()
