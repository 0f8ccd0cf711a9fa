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
  """poolnet-train: `python train.py` (poolnet_jax/train_main.py)."""
  importlib.import_module("poolnet_jax.train_main").run()


def predict():
  """poolnet-predict: `python -m poolnet_jax.predict`."""
  _run_tool("poolnet_jax.predict")


def evaluate():
  """poolnet-evaluate: `python -m poolnet_jax.evaluate`."""
  _run_tool("poolnet_jax.evaluate")


def convert():
  """poolnet-convert: `python -m poolnet_jax.convert`."""
  _run_tool("poolnet_jax.convert")


def export():
  """poolnet-export: `python -m poolnet_jax.export`."""
  _run_tool("poolnet_jax.export")


def inspect():
  """poolnet-inspect: `python -m poolnet_jax.inspect`."""
  _run_tool("poolnet_jax.inspect")


def paper_table():
  """poolnet-paper-table: `python -m poolnet_jax.paper_table`."""
  _run_tool("poolnet_jax.paper_table")
