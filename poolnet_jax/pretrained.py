"""Loading and saving whole models: original .pth files and the project's own format.

The project's format is a directory holding `poolnet.json` (the variant and its
create_model overrides) and `variables/`, an orbax checkpoint of the Flax
variables. `load_pretrained` also accepts an original `.pth` file directly.
"""

import json
import logging
import os
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp

from poolnet_jax.models import create_model
from poolnet_jax.torch_io import mapping
from poolnet_jax.torch_io.pth import read_state_dict
from poolnet_jax.torch_io.pth_writer import write_state_dict

META_FILE = "poolnet.json"
VARIABLES_DIR = "variables"


def load_torch_checkpoint(path, name=None):
  """An original PoolNet `.pth` (legacy or zip format) -> (model, variables).

  The variant is detected from the tensor names unless `name` is given.
  """
  state_dict = read_state_dict(path)
  name, variables = mapping.to_flax(state_dict, name, source=str(path))
  mapping.log_summary(name, variables, str(path))
  return create_model(name), variables


def save_torch_checkpoint(path, name, variables):
  """Writes `variables` as a zip-format `.pth` with the original's tensor names.

  `torch.load` reads it and the original code loads it with `load_state_dict`.
  """
  state_dict = mapping.to_state_dict(variables)
  problems = mapping.mismatch(state_dict, mapping.expected_state_dict(name))
  if any(problems):
    raise mapping.CheckpointMismatch(f"variables do not fit PoolNet variant {name}:" + "".join(
        mapping.describe(*p) for p in zip(("missing", "unexpected", "mis-shaped"), problems)))
  write_state_dict(path, state_dict)


def save_pretrained(directory, name, variables, **overrides):
  """Writes the project's format: `poolnet.json` and an orbax checkpoint of `variables`."""
  directory = Path(directory).absolute()
  directory.mkdir(parents=True, exist_ok=True)
  checkpointer = ocp.StandardCheckpointer()
  # Host numpy copies: device arrays of a pmap or of several hosts are not saveable as such.
  variables = jax.tree_util.tree_map(lambda x: np.array(x, copy=True), variables)
  checkpointer.save(directory / VARIABLES_DIR, variables, force=True)
  checkpointer.wait_until_finished()
  meta = {"variant": name, "overrides": overrides}
  tmp = directory / (META_FILE + ".tmp")
  tmp.write_text(json.dumps(meta, indent=2) + "\n")
  os.replace(tmp, directory / META_FILE)


def load_pretrained(path):
  """(model, variables) from a directory written by the converter or by training,
  or from an original `.pth` file."""
  path = Path(path)
  if path.is_file():
    return load_torch_checkpoint(path)
  meta_file = path / META_FILE
  if not meta_file.is_file():
    raise FileNotFoundError(
        f"{path} is not a poolnet-jax model directory (no {META_FILE}) nor a .pth file")
  meta = json.loads(meta_file.read_text())
  model = create_model(meta["variant"], **_decode_overrides(meta.get("overrides", {})))
  variables = ocp.StandardCheckpointer().restore((path / VARIABLES_DIR).absolute())
  logging.info("%s: PoolNet variant %s", path, meta["variant"])
  return model, variables


def _decode_overrides(overrides):
  overrides = dict(overrides)
  if "stages" in overrides:
    overrides["stages"] = tuple(overrides["stages"])
  if "dtype" in overrides:
    import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
    overrides["dtype"] = jnp.dtype(overrides["dtype"])
  return overrides
