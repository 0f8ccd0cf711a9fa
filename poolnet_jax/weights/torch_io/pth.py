"""Safe, torch-free reading of PyTorch `.pth` state_dicts.

Two on-disk layouts are read:

* zip (torch >= 1.6): `<top>/data.pkl` is a pickle whose tensors refer to
  storages by persistent id `('storage', storage_type, key, location, numel)`;
  the raw bytes of storage `key` are the record `<top>/data/<key>`.
* legacy (torch <= 1.5, e.g. the 0.4.1 PoolNet checkpoints): one stream of
  pickles, magic number, protocol version, sys_info, the object (persistent
  ids `('storage', type, key, location, numel, view_metadata)`), the list of
  storage keys, then per key an int64 element count and the raw bytes.

Unpickling is restricted (`unpickler.py`): each global a state_dict needs maps to a
local stand-in, anything else raises `UnsafePickleError` before it can run.
Tensors are rebuilt lazily and materialised as numpy arrays once every
storage has been read. Writing is `pth_writer.write_state_dict`.
"""

import io
import os
import pickle
import struct
import zipfile

import numpy as np

from poolnet_jax.errors import UserError
from poolnet_jax.weights.torch_io import unpickler

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001


class PthError(UserError):
  """A `.pth` file is malformed, truncated or unsupported."""


class UnsafePickleError(PthError):
  """A `.pth` pickle asks for something a state_dict never needs."""


def _materialize(tensor, big_endian):
  """The numpy array an `unpickler.Tensor` describes (a copy, native byte order)."""
  raw = tensor.storage.raw_bytes()
  bf16 = tensor.dtype == unpickler.BF16
  dtype = np.dtype("<u2" if bf16 else tensor.dtype)
  if big_endian:
    dtype = dtype.newbyteorder(">")
  flat = raw[: raw.size - raw.size % dtype.itemsize].view(dtype)
  size, stride, offset = tensor.size, tensor.stride, tensor.offset
  if 0 in size:
    array = np.zeros(size, dtype)
  else:
    last = offset + sum((n - 1) * s for n, s in zip(size, stride))
    if last >= flat.size:
      raise unpickler.Corrupt(
        f"tensor (offset {offset}, size {size}, stride {stride})"
        f" reaches past its storage of {flat.size} elements"
      )
    array = np.lib.stride_tricks.as_strided(
      flat[offset:], size, [s * dtype.itemsize for s in stride], writeable=False
    )
  array = np.array(array, dtype.newbyteorder("="))
  if bf16:
    array = (array.astype(np.uint32) << 16).view(np.float32)
  if tensor.metadata.get("neg"):
    array = -array
  if tensor.metadata.get("conj"):
    array = np.conj(array)
  return array


def _select_tensors(obj):
  """The state_dict in the unpickled object: {name: unpickler.Tensor}."""
  if not isinstance(obj, dict):
    raise unpickler.Corrupt(f"top level is a {type(obj).__name__}, not a dict")
  for candidate in [obj, obj.get("state_dict"), obj.get("model")]:
    if isinstance(candidate, dict):
      tensors = {k: v for k, v in candidate.items() if isinstance(v, unpickler.Tensor)}
      if tensors:
        bad = [k for k in tensors if not isinstance(k, str)]
        if bad:
          raise unpickler.Corrupt(f"tensor names must be strings, got {bad[0]!r}")
        return tensors
  raise unpickler.Corrupt("no tensors at top level nor under 'state_dict' / 'model'")


def _root_keys(tensors):
  return {(t.storage.root or t.storage).key for t in tensors.values()}


def _read_zip(file):
  """(tensors, big_endian) from a zip archive, storages filled."""
  with zipfile.ZipFile(file) as archive:
    names = archive.namelist()
    pickles = [n for n in names if n.count("/") == 1 and n.endswith("/data.pkl")]
    if not pickles:
      raise unpickler.Corrupt("zip archive has no <top>/data.pkl record")
    top = pickles[0][: -len("data.pkl")]
    storages = {}
    data = archive.read(top + "data.pkl")
    tensors = _select_tensors(unpickler.SafeUnpickler(io.BytesIO(data), storages).load())
    byteorder = b"little"
    if top + "byteorder" in names:
      byteorder = archive.read(top + "byteorder").strip()
      if byteorder not in (b"little", b"big"):
        raise unpickler.Corrupt(f"unknown byteorder record {byteorder!r}")
    for key in sorted(_root_keys(tensors)):
      storage = storages[key]
      name = f"{top}data/{key}"
      if name not in names:
        raise unpickler.Corrupt(f"missing storage record {name!r}")
      expected = storage.numel * unpickler.itemsize(storage.dtype)
      size = archive.getinfo(name).file_size
      if size != expected:
        raise unpickler.Corrupt(f"storage record {name!r} holds {size} bytes, expected {expected}")
      storage.data = np.frombuffer(archive.read(name), np.uint8)
  return tensors, byteorder == b"big"


def _read_legacy(file):
  """(tensors, big_endian) from a legacy pickle stream, storages filled."""
  try:
    magic = unpickler.SafeUnpickler(file).load()
  except (pickle.UnpicklingError, EOFError, ValueError) as e:
    raise unpickler.Corrupt(f"not a PyTorch checkpoint (no magic number: {e})") from e
  if magic != _LEGACY_MAGIC:
    raise unpickler.Corrupt(f"not a PyTorch checkpoint (magic number {magic!r})")
  protocol = unpickler.SafeUnpickler(file).load()
  if protocol != _LEGACY_PROTOCOL:
    raise unpickler.Corrupt(f"unsupported legacy protocol version {protocol!r}")
  sys_info = unpickler.SafeUnpickler(file).load()
  if not isinstance(sys_info, dict):
    raise unpickler.Corrupt(f"bad sys_info record {sys_info!r}")
  big_endian = not sys_info.get("little_endian", True)
  storages = {}
  tensors = _select_tensors(unpickler.SafeUnpickler(file, storages).load())
  keys = unpickler.SafeUnpickler(file).load()
  if not (
    isinstance(keys, list) and all(isinstance(k, str) for k in keys) and set(keys) == set(storages)
  ):
    raise unpickler.Corrupt("storage key list does not match the storages in the pickle")
  needed = _root_keys(tensors)
  remaining = os.fstat(file.fileno()).st_size - file.tell()
  for key in keys:
    storage = storages[key]
    header = file.read(8)
    if len(header) < 8:
      raise unpickler.Corrupt(f"truncated before storage {key}")
    (numel,) = struct.unpack(">q" if big_endian else "<q", header)
    if numel != storage.numel:
      raise unpickler.Corrupt(f"storage {key} holds {numel} elements, expected {storage.numel}")
    nbytes = numel * unpickler.itemsize(storage.dtype)
    remaining -= 8 + nbytes
    if remaining < 0:
      raise unpickler.Corrupt(f"truncated inside storage {key}")
    if key in needed:
      storage.data = np.frombuffer(file.read(nbytes), np.uint8)
    else:
      file.seek(nbytes, io.SEEK_CUR)
  return tensors, big_endian


def read_state_dict(path, as_float32=False):
  """Reads the tensors of a `.pth` file as {name: np.ndarray}, in file order.

  Args:
    path: a zip (torch >= 1.6) or legacy (torch <= 1.5) `.pth` file.
    as_float32: cast floating tensors (fp16, bf16, fp64) to float32.

  Returns:
    The top-level dict of tensors, or the one under 'state_dict' / 'model'.
    Arrays keep their stored dtype (bfloat16 becomes float32), on CPU.

  Raises:
    UnsafePickleError: the pickle names a global a state_dict never needs.
    PthError: the file is not a readable `.pth` file.
  """
  path = os.fspath(path)
  with open(path, "rb") as file:
    try:
      head = file.read(512)
      file.seek(0)
      if not head:
        raise unpickler.Corrupt("empty file")
      if head.startswith(b"PK\x03\x04"):
        tensors, big_endian = _read_zip(file)
      elif head[257:262] == b"ustar":
        raise unpickler.Corrupt("tar checkpoints (PyTorch < 0.1.10) are unsupported")
      elif head[:1] == b"\x80":
        tensors, big_endian = _read_legacy(file)
      else:
        raise unpickler.Corrupt(f"not a PyTorch checkpoint (starts with {head[:8]!r})")
      arrays = {k: _materialize(t, big_endian) for k, t in tensors.items()}
    except unpickler.Unsafe as e:
      raise UnsafePickleError(f"{path}: {e}") from None
    except unpickler.Corrupt as e:
      raise PthError(f"{path}: {e}") from None
    except zipfile.BadZipFile as e:
      raise PthError(f"{path}: broken zip archive, truncated or corrupt ({e})") from e
    except Exception as e:  # zipfile, pickle, struct, numpy internals.
      raise PthError(f"{path}: corrupt or truncated file ({type(e).__name__}: {e})") from e
  if as_float32:
    arrays = {k: a.astype(np.float32) if a.dtype.kind == "f" else a for k, a in arrays.items()}
  return arrays


def strip_prefix(state_dict, prefix="module."):
  """Drops `prefix` (nn.DataParallel's 'module.') if every key has it."""
  if state_dict and all(k.startswith(prefix) for k in state_dict):
    return {k[len(prefix) :]: v for k, v in state_dict.items()}
  return dict(state_dict)
