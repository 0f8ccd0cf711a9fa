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
ORBAX_MARK = "_CHECKPOINT_METADATA"  # in every orbax checkpoint folder


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


def save_pretrained(directory, name, variables, *, overwrite=False, **overrides):
  """Writes the project's format: `poolnet.json` and an orbax checkpoint of `variables`.

  `directory` must be absent or empty; `overwrite=True` also takes a model
  directory of this format (see `check_save_target`), replacing only its
  `poolnet.json` and `variables/` (other files there, such as training's
  `best.json`, stay).
  """
  directory = Path(directory).absolute()
  check_save_target(directory, overwrite)
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


def check_save_target(directory, overwrite=False):
  """Raises unless `save_pretrained` may write to `directory`; never deletes anything.

  Fine: a path that does not exist, an empty folder, and with `overwrite` a
  model directory of this format (its `poolnet.json`, or a `variables/` orbax
  checkpoint of a save cut short). Refused: a file, any other non-empty folder.
  """
  directory = Path(directory)
  if not directory.exists():
    return
  if not directory.is_dir():
    raise NotADirectoryError(f"{directory} is a file, not a folder for a model")
  entries = sorted(p.name for p in directory.iterdir() if not _leftover(p.name))
  if not entries:
    return
  if not is_model_dir(directory):
    shown = ", ".join(entries[:5]) + (f" and {len(entries) - 5} more" if len(entries) > 5 else "")
    raise FileExistsError(f"{directory} is not empty ({shown}) and is not a converted model: "
                          f"choose a new or empty folder")
  if not overwrite:
    raise FileExistsError(f"{directory} already holds a converted model; pass --overwrite "
                          f"(save_pretrained(..., overwrite=True)) to replace it")


def is_model_dir(directory):
  """True for a directory `save_pretrained` wrote (or began to write before it was stopped)."""
  directory = Path(directory)
  variables = directory / VARIABLES_DIR
  if variables.exists() and not variables.is_dir():
    return False
  return _read_meta(directory) is not None or (variables / ORBAX_MARK).is_file()


def _leftover(name):
  """Temporary names of an interrupted save: its orbax staging folder, its meta file."""
  return name == META_FILE + ".tmp" or name.startswith(VARIABLES_DIR + ".orbax-checkpoint-tmp")


def _read_meta(directory):
  """The parsed poolnet.json of `directory`, or None if there is none or it is not ours."""
  try:
    meta = json.loads((Path(directory) / META_FILE).read_text())
  except (OSError, ValueError):
    return None
  return meta if isinstance(meta, dict) and "variant" in meta else None


def load_pretrained(path):
  """(model, variables) from a directory written by the converter or by training,
  or from an original `.pth` file.

  A path to the directory's `poolnet.json` or `variables/` means the directory.
  Raises FileNotFoundError saying what the path is when it holds no model (a
  training workdir names its `best/`).
  """
  path = Path(path)
  if path.name in (META_FILE, VARIABLES_DIR) and _read_meta(path.parent) is not None:
    path = path.parent
  if path.is_file():
    return load_torch_checkpoint(path)
  meta = _read_meta(path)
  if meta is None:
    raise FileNotFoundError(_not_a_model(path))
  if not (path / VARIABLES_DIR).is_dir():
    raise FileNotFoundError(f"{path} has a {META_FILE} but no {VARIABLES_DIR}/ folder (a save "
                            f"that was stopped?)")
  model = create_model(meta["variant"], **_decode_overrides(meta.get("overrides", {})))
  variables = ocp.StandardCheckpointer().restore((path / VARIABLES_DIR).absolute())
  logging.info("%s: PoolNet variant %s", path, meta["variant"])
  return model, variables


def _not_a_model(path):
  """Why `path` (not a .pth file, no model metadata) is no model, and where one may be."""
  if not path.exists():
    return f"{path}: no such file or folder (give a converted or trained model folder or a .pth)"
  if (path / META_FILE).is_file():
    return f"{path / META_FILE}: not a readable poolnet-jax model description"
  if _read_meta(path / "best") is not None:
    return f"{path} is a training workdir; its best model is {path / 'best'}"
  if (path / "checkpoints").is_dir():
    return (f"{path} is a training workdir without a best model yet ({path / 'best'} is written "
            f"at the first validation)")
  return f"{path} is not a poolnet-jax model directory (no {META_FILE}) nor a .pth file"


def _decode_overrides(overrides):
  overrides = dict(overrides)
  if "stages" in overrides:
    overrides["stages"] = tuple(overrides["stages"])
  if "dtype" in overrides:
    import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
    overrides["dtype"] = jnp.dtype(overrides["dtype"])
  return overrides
