"""The installed console scripts (pyproject.toml's [project.scripts]).

Each runs a tool's `main` exactly as `python -m poolnet_jax.<tool>` does; the
tool's module is imported only when its script runs.
"""

import importlib

from poolnet_jax import cli


def _run_tool(module_name):
  module = importlib.import_module(module_name)
  cli.run_main(module.main, module.FLAGS, module.__doc__)


def train():
  """poolnet-train: `python train.py` (poolnet_jax/cli/train.py)."""
  importlib.import_module("poolnet_jax.cli.train").run()


def predict():
  """poolnet-predict: `python -m poolnet_jax.cli.predict`."""
  _run_tool("poolnet_jax.cli.predict")


def evaluate():
  """poolnet-evaluate: `python -m poolnet_jax.cli.evaluate`."""
  _run_tool("poolnet_jax.cli.evaluate")


def convert():
  """poolnet-convert: `python -m poolnet_jax.cli.convert`."""
  _run_tool("poolnet_jax.cli.convert")


def export():
  """poolnet-export: `python -m poolnet_jax.cli.export`."""
  _run_tool("poolnet_jax.cli.export")


def inspect():
  """poolnet-inspect: `python -m poolnet_jax.cli.inspect_pth`."""
  _run_tool("poolnet_jax.cli.inspect_pth")


def paper_table():
  """poolnet-paper-table: `python -m poolnet_jax.cli.paper_table`."""
  _run_tool("poolnet_jax.cli.paper_table")
