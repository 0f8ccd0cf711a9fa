"""The original's state_dict as a safetensors file, its model spec in the header.

    write_safetensors("model.safetensors", state_dict, ModelSpec("resnet50", width=0.125))
    state_dict, spec = read_safetensors("model.safetensors")  # spec: a ModelSpec or None

The tensors keep the original's names and layouts (float32, BatchNorm's counters
int64), so `safetensors.torch.load_file` gives the original's state_dict. The
header's `__metadata__` (strings only) is {"format": "poolnet-jax", "model":
"<ModelSpec.to_json() as JSON>"}; files written before the spec hold {"variant": ...,
"overrides": "<JSON>"} instead, and read the same. A file without either (one that
`safetensors.torch.save_file(model.state_dict(), ...)` wrote) reads with spec None.
Read with `safetensors.numpy`: no torch.
"""

import json
import os
from pathlib import Path
import struct

import safetensors
import safetensors.numpy

from poolnet_jax.models import ModelSpec
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


def write_safetensors(path, state_dict, spec):
  """Writes `state_dict` ({name: C-contiguous numpy array}) and `spec` (a ModelSpec).

  Written to `<path>.tmp` first, then renamed: an interrupted write leaves no
  half file under `path`. The file gets the usual permissions (the umask's), not
  the 0600 the safetensors library gives it.
  """
  path = Path(path)
  metadata = {"format": FORMAT, "model": json.dumps(spec.to_json(), sort_keys=True)}
  tmp = path.with_name(path.name + ".tmp")
  safetensors.numpy.save_file(dict(state_dict), str(tmp), metadata=metadata)
  umask = os.umask(0)
  os.umask(umask)
  os.chmod(tmp, 0o666 & ~umask)
  os.replace(tmp, path)


def read_safetensors(path):
  """({name: numpy array}, ModelSpec or None) of a safetensors file.

  The spec is None when the header has no poolnet-jax metadata. Raises
  FileNotFoundError, or SafetensorsError naming the file and the problem (not a
  safetensors file, a dtype numpy cannot hold, poolnet-jax metadata that is no
  model spec).
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
  if "model" not in raw and not raw.get("variant"):
    raise SafetensorsError(
      f"{path}: its poolnet-jax metadata names no model (header metadata: {raw})"
    )
  try:
    if "model" in raw:
      obj = json.loads(raw["model"])
    else:  # written before the model spec: the variant, its overrides as JSON
      obj = {"variant": raw["variant"], "overrides": json.loads(raw.get("overrides", "{}"))}
    return ModelSpec.from_json(obj)
  except (ValueError, TypeError) as error:
    raise SafetensorsError(
      f"{path}: its poolnet-jax metadata is not a PoolNet model spec ({error}; header "
      f"metadata: {raw})"
    ) from None


def has_poolnet_metadata(path):
  """True for a readable safetensors file whose header carries poolnet-jax metadata."""
  try:
    with safetensors.safe_open(str(path), framework="numpy") as file:
      raw = file.metadata()
  except (OSError, safetensors.SafetensorError):
    return False
  return bool(raw) and raw.get("format") == FORMAT
