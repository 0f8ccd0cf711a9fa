"""Loading and saving whole models: original .pth files and the project's own format.

The project's format is a directory holding `poolnet.json` ({"model": the ModelSpec's
JSON object}; files of before the spec hold {"variant", "overrides"} and load the same)
and `variables/`, an orbax checkpoint of the Flax variables, and/or `model.safetensors`
(the original's tensor names, the spec in its header; `weights/safetensors_io.py`).
`load_pretrained` also accepts an original `.pth` file or a `.safetensors` file directly.
Where a model is named, it is a ModelSpec or a variant name with its options.
"""

import json
import logging
import os
from pathlib import Path
import shutil

import jax
import numpy as np
import orbax.checkpoint as ocp

from poolnet_jax.models import ModelSpec, as_spec, create_model
from poolnet_jax.weights import safetensors_io
from poolnet_jax.weights.torch_io import mapping
from poolnet_jax.weights.torch_io.pth import read_state_dict
from poolnet_jax.weights.torch_io.pth_writer import write_state_dict

META_FILE = "poolnet.json"
VARIABLES_DIR = "variables"
ORBAX_MARK = "_CHECKPOINT_METADATA"  # in every orbax checkpoint folder
SAFETENSORS_FILE = "model.safetensors"


def load_torch_checkpoint(path, name=None):
  """An original PoolNet `.pth` (legacy or zip format) -> (model, variables).

  The variant is detected from the tensor names unless `name` is given.
  """
  state_dict = read_state_dict(path)
  name, variables = mapping.to_flax(state_dict, name, source=str(path))
  mapping.log_summary(name, variables, str(path))
  return create_model(name), variables


def save_torch_checkpoint(path, spec, variables, **options):
  """Writes `variables` as a zip-format `.pth` with the original's tensor names.

  `torch.load` reads it and the original code loads it with `load_state_dict`.
  """
  write_state_dict(path, _checked_state_dict(_spec(spec, options, "variables"), variables))


def _spec(spec, options, source):
  """as_spec(spec, **options), or CheckpointMismatch saying why no PoolNet can be made."""
  try:
    return as_spec(spec, **options)
  except (ValueError, TypeError) as error:
    raise mapping.CheckpointMismatch(f"{source}: no PoolNet can be made: {error}") from None


def _checked_state_dict(spec, variables):
  """The original's state_dict of `variables`, which must fit the PoolNet of `spec`."""
  state_dict = mapping.to_state_dict(variables)
  problems = mapping.mismatch(state_dict, mapping.expected_state_dict(spec))
  if any(problems):
    raise mapping.CheckpointMismatch(
      f"variables do not fit PoolNet variant {spec}:"
      + "".join(
        mapping.describe(*p) for p in zip(("missing", "unexpected", "mis-shaped"), problems)
      )
    )
  return state_dict


def save_safetensors(path, spec, variables, **options):
  """Writes `variables` as a safetensors file with the original's tensor names.

  float32 (BatchNorm's counters int64), exactly `mapping.to_state_dict`'s
  state_dict, so `safetensors.torch.load_file` gives what the original's
  `load_state_dict` takes; the header's metadata holds the model spec
  (`load_pretrained` reads it back). The variables must fit that model
  (missing, unexpected and mis-shaped names are listed).
  """
  spec = _spec(spec, options, "variables")
  safetensors_io.write_safetensors(path, _checked_state_dict(spec, variables), spec)


def load_safetensors(path):
  """(model, variables) from a safetensors file, checked strictly through the name table.

  The model spec comes from the header's poolnet-jax metadata; a file
  without it (`safetensors.torch.save_file(model.state_dict(), ...)`) is matched
  by its tensor names, as a `.pth` is.
  """
  state_dict, spec = safetensors_io.read_safetensors(path)
  if spec is None:
    try:
      name, variables = mapping.to_flax(state_dict, source=str(path))
    except mapping.CheckpointMismatch as error:
      raise safetensors_io.SafetensorsError(
        f"{error}\n  ({path} has no poolnet-jax metadata in its header, so its variant was "
        f"looked for by its tensor names)"
      ) from None
    spec = ModelSpec(name)
  else:
    problems = mapping.mismatch(state_dict, mapping.expected_state_dict(spec))
    if any(problems):
      raise safetensors_io.SafetensorsError(
        f"{path} does not hold the PoolNet its metadata names, {spec}:"
        + "".join(
          mapping.describe(*p)
          for p in zip(("missing tensors", "unexpected tensors", "shape mismatches"), problems)
        )
      )
    variables = mapping.unflatten(state_dict)
  mapping.log_summary(spec.variant, variables, str(path))
  return create_model(spec), variables


def save_pretrained(directory, spec, variables, *, overwrite=False, **options):
  """Writes the project's format: `poolnet.json` and an orbax checkpoint of `variables`.

  `directory` must be absent or empty; `overwrite=True` also takes a model
  directory of this format (see `check_save_target`), replacing only its
  `poolnet.json` and `variables/` (other files there, such as training's
  `best.json`, stay).
  """
  spec = _spec(spec, options, "variables")
  directory = Path(directory).absolute()
  check_save_target(directory, overwrite)
  directory.mkdir(parents=True, exist_ok=True)
  checkpointer = ocp.StandardCheckpointer()
  # Host numpy copies: device arrays of a pmap or of several hosts are not saveable as such.
  variables = jax.tree_util.tree_map(lambda x: np.array(x, copy=True), variables)
  checkpointer.save(directory / VARIABLES_DIR, variables, force=True)  # every process takes part
  checkpointer.wait_until_finished()
  if jax.process_index() != 0:  # one writer of the metadata on a shared directory
    return
  meta = {"model": spec.to_json()}
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
    raise FileExistsError(
      f"{directory} is not empty ({shown}) and is not a converted model: "
      f"choose a new or empty folder"
    )
  if not overwrite:
    raise FileExistsError(
      f"{directory} already holds a converted model; pass --overwrite "
      f"(save_pretrained(..., overwrite=True)) to replace it"
    )


def is_model_dir(directory):
  """True for a directory `save_pretrained` wrote (or began to write before it was stopped),
  or one holding a `model.safetensors` with poolnet-jax metadata."""
  directory = Path(directory)
  variables = directory / VARIABLES_DIR
  if variables.exists() and not variables.is_dir():
    return False
  return (
    _read_meta(directory) is not None
    or (variables / ORBAX_MARK).is_file()
    or safetensors_io.has_poolnet_metadata(directory / SAFETENSORS_FILE)
  )


def remove_formats(directory, formats):
  """Deletes the converted model's files of `formats` ("orbax", "safetensors") in `directory`:
  `poolnet.json` and `variables/` (if they are ours), `model.safetensors` (if its header is).

  What `convert --overwrite` does with the format it did not write this time, so
  that no file there holds the previous model's weights.
  """
  directory = Path(directory)
  if "orbax" in formats:
    if (directory / VARIABLES_DIR / ORBAX_MARK).is_file():
      shutil.rmtree(directory / VARIABLES_DIR)
    if _read_meta(directory) is not None:
      (directory / META_FILE).unlink()
  if "safetensors" in formats and safetensors_io.has_poolnet_metadata(directory / SAFETENSORS_FILE):
    (directory / SAFETENSORS_FILE).unlink()


def _leftover(name):
  """Temporary names of an interrupted save: its orbax staging folder, its meta file, its
  safetensors file."""
  return name in (META_FILE + ".tmp", SAFETENSORS_FILE + ".tmp") or name.startswith(
    VARIABLES_DIR + ".orbax-checkpoint-tmp"
  )


def _read_meta(directory):
  """The parsed poolnet.json of `directory`, or None if there is none or it is not ours."""
  try:
    meta = json.loads((Path(directory) / META_FILE).read_text())
  except (OSError, ValueError):
    return None
  return meta if isinstance(meta, dict) and ("model" in meta or "variant" in meta) else None


def _meta_spec(meta, path):
  """The ModelSpec of a poolnet.json's object ({"model": ...} or the older {"variant",
  "overrides"}), or CheckpointMismatch naming the file."""
  try:
    return ModelSpec.from_json(meta.get("model", meta))
  except (ValueError, TypeError) as error:
    raise mapping.CheckpointMismatch(
      f"{path / META_FILE}: not a PoolNet model description ({error})"
    ) from None


def load_pretrained(path):
  """(model, variables) from a directory written by the converter or by training,
  an original `.pth` file, or a `.safetensors` file.

  A path to the directory's `poolnet.json` or `variables/` means the directory;
  a directory with both formats loads its orbax `variables/`, one with only
  `model.safetensors` that file. Raises FileNotFoundError saying what the path
  is when it holds no model (a training workdir names its `best/`).
  """
  path = Path(path)
  if path.name in (META_FILE, VARIABLES_DIR) and _read_meta(path.parent) is not None:
    path = path.parent
  if path.is_file():
    if safetensors_io.looks_like_safetensors(path):
      return load_safetensors(path)
    return load_torch_checkpoint(path)
  meta = _read_meta(path)
  if meta is None and (path / SAFETENSORS_FILE).is_file():
    return load_safetensors(path / SAFETENSORS_FILE)
  if meta is None:
    raise FileNotFoundError(_not_a_model(path))
  if not (path / VARIABLES_DIR).is_dir():
    raise FileNotFoundError(
      f"{path} has a {META_FILE} but no {VARIABLES_DIR}/ folder (a save that was stopped?)"
    )
  spec = _meta_spec(meta, path)
  variables = ocp.StandardCheckpointer().restore((path / VARIABLES_DIR).absolute())
  logging.info("%s: PoolNet %s", path, spec)
  model = create_model(spec)
  return model, variables


def _not_a_model(path):
  """Why `path` (not a .pth file, no model metadata) is no model, and where one may be."""
  if not path.exists():
    return (
      f"{path}: no such file or folder (give a converted or trained model folder, a .pth "
      f"or a .safetensors file)"
    )
  if (path / META_FILE).is_file():
    return f"{path / META_FILE}: not a readable poolnet-jax model description"
  if _read_meta(path / "best") is not None:
    return f"{path} is a training workdir; its best model is {path / 'best'}"
  if (path / "checkpoints").is_dir():
    return (
      f"{path} is a training workdir without a best model yet ({path / 'best'} is written "
      f"at the first validation)"
    )
  return (
    f"{path} is not a poolnet-jax model directory (no {META_FILE} or {SAFETENSORS_FILE}) "
    f"nor a .pth or .safetensors file"
  )
