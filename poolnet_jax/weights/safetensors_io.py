"""The original's state_dict as a safetensors file, its variant in the header.

    write_safetensors("model.safetensors", state_dict, "resnet50", {"width": 0.125})
    state_dict, meta = read_safetensors("model.safetensors")  # meta: variant, overrides or None

The tensors keep the original's names and layouts (float32, BatchNorm's counters
int64), so `safetensors.torch.load_file` gives the original's state_dict. The
header's `__metadata__` (strings only) is {"format": "poolnet-jax", "variant":
..., "overrides": "<create_model overrides as JSON>"}. A file without it (one
that `safetensors.torch.save_file(model.state_dict(), ...)` wrote) reads with
meta None. Read with `safetensors.numpy`: no torch.
"""

import json
import os
from pathlib import Path
import struct

import numpy as np
import safetensors
import safetensors.numpy

from poolnet_jax.weights.torch_io.mapping import CheckpointMismatch

FORMAT = "poolnet-jax"  # the header's metadata "format"
SUFFIX = ".safetensors"


class SafetensorsError(CheckpointMismatch):
  """A safetensors file that cannot be read, or whose header is not what it should be."""


def looks_like_safetensors(path):
  """True for a file named *.safetensors or one that starts like one (header length, '{')."""
  path = Path(path)
  if path.suffix == SUFFIX:
    return True
  try:
    with open(path, "rb") as file:
      head = file.read(9)
    size = path.stat().st_size
  except OSError:
    return False
  return len(head) == 9 and head[8:] == b"{" and struct.unpack("<Q", head[:8])[0] < size


def write_safetensors(path, state_dict, variant, overrides):
  """Writes `state_dict` ({name: C-contiguous numpy array}) and the variant's metadata.

  Written to `<path>.tmp` first, then renamed: an interrupted write leaves no
  half file under `path`. The file gets the usual permissions (the umask's), not
  the 0600 the safetensors library gives it.
  """
  path = Path(path)
  metadata = {
    "format": FORMAT,
    "variant": variant,
    "overrides": json.dumps(overrides, sort_keys=True, default=_json_value),
  }
  tmp = path.with_name(path.name + ".tmp")
  safetensors.numpy.save_file(dict(state_dict), str(tmp), metadata=metadata)
  umask = os.umask(0)
  os.umask(umask)
  os.chmod(tmp, 0o666 & ~umask)
  os.replace(tmp, path)


def _json_value(value):
  """Overrides JSON cannot write as such: dtypes, as their names."""
  try:
    return np.dtype(value).name
  except TypeError:
    raise TypeError(f"override {value!r} cannot be written in a safetensors header") from None


def read_safetensors(path):
  """({name: numpy array}, {"variant", "overrides"} or None) of a safetensors file.

  meta is None when the header has no poolnet-jax metadata. Raises
  FileNotFoundError, or SafetensorsError naming the file and the problem (not a
  safetensors file, a dtype numpy cannot hold, poolnet-jax metadata without a
  variant or with overrides that are not a JSON object).
  """
  path = Path(path)
  if not path.is_file():
    raise FileNotFoundError(2, "No such file", str(path))
  try:
    with safetensors.safe_open(str(path), framework="numpy") as file:
      raw_meta = file.metadata()
      state_dict = {}
      for key in file.keys():
        try:
          state_dict[key] = file.get_tensor(key)
        except TypeError as error:  # bfloat16 and other dtypes numpy lacks
          raise SafetensorsError(
            f"{path}: tensor {key} cannot be read as numpy ({error})"
          ) from None
  except safetensors.SafetensorError as error:
    raise SafetensorsError(f"{path}: not a readable safetensors file ({error})") from None
  return state_dict, _parse_meta(raw_meta, path)


def _parse_meta(raw, path):
  if not raw or raw.get("format") != FORMAT:
    return None
  variant = raw.get("variant")
  if not variant:
    raise SafetensorsError(
      f"{path}: its poolnet-jax metadata names no variant (header metadata: {raw})"
    )
  try:
    overrides = json.loads(raw.get("overrides", "{}"))
  except ValueError:
    overrides = None
  if not isinstance(overrides, dict):
    raise SafetensorsError(
      f"{path}: its metadata's overrides are not a JSON object: {raw.get('overrides')!r}"
    )
  return {"variant": variant, "overrides": overrides}


def has_poolnet_metadata(path):
  """True for a readable safetensors file whose header carries poolnet-jax metadata."""
  try:
    with safetensors.safe_open(str(path), framework="numpy") as file:
      raw = file.metadata()
  except (OSError, safetensors.SafetensorError):
    return False
  return bool(raw) and raw.get("format") == FORMAT
