"""Safe, torch-free reading of PyTorch `.pth` state_dicts.

Two on-disk layouts are read:

* zip (torch >= 1.6): `<top>/data.pkl` is a pickle whose tensors refer to
  storages by persistent id `('storage', storage_type, key, location, numel)`;
  the raw bytes of storage `key` are the record `<top>/data/<key>`.
* legacy (torch <= 1.5, e.g. the 0.4.1 PoolNet checkpoints): one stream of
  pickles, magic number, protocol version, sys_info, the object (persistent
  ids `('storage', type, key, location, numel, view_metadata)`), the list of
  storage keys, then per key an int64 element count and the raw bytes.

Unpickling is restricted: each global a state_dict needs maps to a local
stand-in here, anything else raises `UnsafePickleError` before it can run.
Tensors are rebuilt lazily and materialised as numpy arrays once every
storage has been read. Writing is `pth_writer.write_state_dict`.
"""

import _compat_pickle
import collections
import io
import os
import pickle
import struct
import zipfile

import numpy as np

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001
_BF16 = "bfloat16"  # Read as uint16 bits, widened to float32 (no numpy type).

# Storage class name -> element dtype (little-endian).
_STORAGE_DTYPES = {
  "FloatStorage": "<f4",
  "DoubleStorage": "<f8",
  "HalfStorage": "<f2",
  "BFloat16Storage": _BF16,
  "LongStorage": "<i8",
  "IntStorage": "<i4",
  "ShortStorage": "<i2",
  "CharStorage": "i1",
  "ByteStorage": "u1",
  "BoolStorage": "?",
  "ComplexFloatStorage": "<c8",
  "ComplexDoubleStorage": "<c16",
  "UntypedStorage": "u1",
}
# torch dtype name -> element dtype (used by _rebuild_tensor_v3).
_TORCH_DTYPES = {
  "float32": "<f4",
  "float": "<f4",
  "float64": "<f8",
  "double": "<f8",
  "float16": "<f2",
  "half": "<f2",
  "bfloat16": _BF16,
  "int64": "<i8",
  "long": "<i8",
  "int32": "<i4",
  "int": "<i4",
  "int16": "<i2",
  "short": "<i2",
  "int8": "i1",
  "uint8": "u1",
  "uint16": "<u2",
  "uint32": "<u4",
  "uint64": "<u8",
  "bool": "?",
  "complex64": "<c8",
  "cfloat": "<c8",
  "complex128": "<c16",
  "cdouble": "<c16",
}


class PthError(ValueError):
  """A `.pth` file is malformed, truncated or unsupported."""


class UnsafePickleError(PthError):
  """A `.pth` pickle asks for something a state_dict never needs."""


class _Corrupt(Exception):
  """Internal: what is wrong, without the file name."""


class _Unsafe(Exception):
  """Internal: refused pickle content, without the file name."""


class _StandIn:
  """Base of every object a pickle can reach: BUILD (mutation) is refused."""

  __slots__ = ()

  def __setstate__(self, state):
    raise _Unsafe(f"BUILD on {self!r} refused")


class _Token(_StandIn):
  """A named constant: a 'storage' type, a torch 'dtype' or a 'tensor' class.

  `dtype` is the numpy element type it stands for (_BF16 or None possible).
  """

  __slots__ = ("name", "kind", "dtype")

  def __init__(self, name, kind, dtype=None):
    self.name, self.kind, self.dtype = name, kind, dtype

  def __call__(self, *args):
    raise _Unsafe(f"call of {self.name} refused")

  def __repr__(self):
    return self.name


def _is_token(x, kind):
  return isinstance(x, _Token) and x.kind == kind


class _Callable(_StandIn):
  """Stand-in for one allowed torch function, calling a local rebuilder."""

  __slots__ = ("name", "fn")

  def __init__(self, name, fn):
    self.name, self.fn = name, fn

  def __call__(self, *args):
    return self.fn(*args)

  def __repr__(self):
    return self.name


class _Storage(_StandIn):
  """A storage named by a persistent id; `data` (uint8) is filled later."""

  __slots__ = ("dtype", "numel", "key", "root", "offset", "data")

  def __init__(self, dtype, numel, key, root=None, offset=0):
    self.dtype, self.numel, self.key = dtype, numel, key
    self.root, self.offset, self.data = root, offset, None

  def raw_bytes(self):
    if self.root is None:
      return self.data
    item = _itemsize(self.dtype)
    start = self.offset * item
    return self.root.data[start : start + self.numel * item]


class _Tensor(_StandIn):
  """A tensor recorded by `_rebuild_tensor*`, materialised after loading."""

  __slots__ = ("storage", "offset", "size", "stride", "dtype", "metadata")

  def __init__(self, storage, offset, size, stride, dtype=None, metadata=None):
    if not isinstance(storage, _Storage):
      raise _Corrupt(f"tensor built from {type(storage).__name__}, not a storage")
    if not (
      _is_int_tuple(size)
      and _is_int_tuple(stride)
      and len(size) == len(stride)
      and _is_int(offset)
      and offset >= 0
      and min((*size, *stride), default=0) >= 0
    ):
      raise _Corrupt(f"bad tensor geometry size={size!r} stride={stride!r} offset={offset!r}")
    if metadata is not None and not isinstance(metadata, dict):
      raise _Corrupt(f"bad tensor metadata {metadata!r}")
    self.storage, self.offset = storage, offset
    self.size, self.stride = tuple(size), tuple(stride)
    self.dtype, self.metadata = dtype or storage.dtype, metadata or {}


class _StateDict(collections.OrderedDict):
  """`collections.OrderedDict` whose BUILD state (`_metadata`) is dropped."""

  def __setstate__(self, state):
    del state


def _is_int(x):
  return isinstance(x, int) and not isinstance(x, bool)


def _is_int_tuple(x):
  return isinstance(x, (tuple, list)) and all(_is_int(v) for v in x)


def _itemsize(dtype):
  return 2 if dtype == _BF16 else np.dtype(dtype).itemsize


def _rebuild_tensor_v2(
  storage, offset, size, stride, requires_grad=False, backward_hooks=None, metadata=None
):
  del requires_grad, backward_hooks
  return _Tensor(storage, offset, size, stride, metadata=metadata)


def _rebuild_tensor_v3(
  storage, offset, size, stride, requires_grad, backward_hooks, dtype, metadata=None
):
  del requires_grad, backward_hooks
  if not _is_token(dtype, "dtype"):
    raise _Corrupt(f"_rebuild_tensor_v3 with dtype {dtype!r}")
  return _Tensor(storage, offset, size, stride, dtype.dtype, metadata)


def _rebuild_tensor(storage, offset, size, stride):
  return _Tensor(storage, offset, size, stride)


def _rebuild_parameter(data, requires_grad, backward_hooks, state=None):
  del requires_grad, backward_hooks, state
  if not isinstance(data, _Tensor):
    raise _Corrupt(f"parameter wraps {type(data).__name__}, not a tensor")
  return data


def _rebuild_from_type_v2(func, new_type, args, state):
  del state
  if not (isinstance(func, _Callable) and _is_token(new_type, "tensor")):
    raise _Unsafe(f"_rebuild_from_type_v2({func!r}, {new_type!r}) refused")
  return func(*args)


def _allowed_globals():
  """(module, name) -> stand-in, for everything a state_dict may need."""
  allowed = {("collections", "OrderedDict"): _StateDict}
  for name, fn in [
    ("_rebuild_tensor", _rebuild_tensor),
    ("_rebuild_tensor_v2", _rebuild_tensor_v2),
    ("_rebuild_tensor_v3", _rebuild_tensor_v3),
    ("_rebuild_parameter", _rebuild_parameter),
    ("_rebuild_parameter_with_state", _rebuild_parameter),
  ]:
    allowed["torch._utils", name] = _Callable(f"torch._utils.{name}", fn)
  allowed["torch._tensor", "_rebuild_from_type_v2"] = _Callable(
    "torch._tensor._rebuild_from_type_v2", _rebuild_from_type_v2
  )
  allowed["torch", "Size"] = _Callable("torch.Size", tuple)
  for name, dtype in _STORAGE_DTYPES.items():
    for module in ("torch", "torch.cuda", "torch.storage"):
      allowed[module, name] = _Token(f"{module}.{name}", "storage", dtype)
  for name, dtype in _TORCH_DTYPES.items():
    allowed["torch", name] = _Token(f"torch.{name}", "dtype", dtype)
  for module, name in [
    ("torch", "Tensor"),
    ("torch._tensor", "Tensor"),
    ("torch.nn.parameter", "Parameter"),
  ]:
    allowed[module, name] = _Token(f"{module}.{name}", "tensor")
  return allowed


_ALLOWED = _allowed_globals()


class _SafeUnpickler(pickle.Unpickler):
  """Unpickler that resolves globals only to the stand-ins above."""

  def __init__(self, file, storages=None):
    super().__init__(file, encoding="utf-8")
    self.storages = storages  # key -> _Storage; None: no persistent ids.

  def find_class(self, module, name):
    stand_in = _ALLOWED.get((module, name))
    if stand_in is None:
      # Name the global as Python 3 resolves it (protocol 2 writes py2 names).
      py3 = _compat_pickle.NAME_MAPPING.get(
        (module, name), (_compat_pickle.IMPORT_MAPPING.get(module, module), name)
      )
      spelled = "" if py3 == (module, name) else f" (spelled '{module}.{name}')"
      raise _Unsafe(
        f"global '{py3[0]}.{py3[1]}'{spelled} is not allowed in a"
        " state_dict (refused, nothing was run)"
      )
    return stand_in

  def persistent_load(self, pid):
    if self.storages is None:
      raise _Unsafe(f"unexpected persistent id {pid!r}")
    return _storage_from_pid(pid, self.storages)


def _storage_from_pid(pid, storages):
  """The `_Storage` for a persistent id (legacy 6-tuple or zip 5-tuple)."""
  if not (isinstance(pid, tuple) and len(pid) in (5, 6) and pid[0] in ("storage", b"storage")):
    raise _Unsafe(f"persistent id {pid!r} is not a storage record")
  storage_type, key, location, numel = pid[1:5]
  view = pid[5] if len(pid) == 6 else None
  if not (
    _is_token(storage_type, "storage")
    and isinstance(key, str)
    and isinstance(location, str)
    and _is_int(numel)
    and numel >= 0
  ):
    raise _Unsafe(f"malformed storage record {pid!r}")
  if key not in storages:
    storages[key] = _Storage(storage_type.dtype, numel, key)
  root = storages[key]
  if root.dtype != storage_type.dtype or root.numel != numel:
    raise _Corrupt(f"storage {key} declared twice with different types")
  if view is None:
    return root
  if not (
    isinstance(view, tuple)
    and len(view) == 3
    and isinstance(view[0], str)
    and _is_int(view[1])
    and _is_int(view[2])
    and 0 <= view[1]
    and view[1] + view[2] <= numel
    and view[2] >= 0
  ):
    raise _Corrupt(f"bad storage view {view!r} of storage {key}")
  return _Storage(root.dtype, view[2], view[0], root, view[1])


def _materialize(tensor, big_endian):
  """The numpy array a `_Tensor` describes (a copy, native byte order)."""
  raw = tensor.storage.raw_bytes()
  bf16 = tensor.dtype == _BF16
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
      raise _Corrupt(
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
  """The state_dict in the unpickled object: {name: _Tensor}."""
  if not isinstance(obj, dict):
    raise _Corrupt(f"top level is a {type(obj).__name__}, not a dict")
  for candidate in [obj, obj.get("state_dict"), obj.get("model")]:
    if isinstance(candidate, dict):
      tensors = {k: v for k, v in candidate.items() if isinstance(v, _Tensor)}
      if tensors:
        bad = [k for k in tensors if not isinstance(k, str)]
        if bad:
          raise _Corrupt(f"tensor names must be strings, got {bad[0]!r}")
        return tensors
  raise _Corrupt("no tensors at top level nor under 'state_dict' / 'model'")


def _root_keys(tensors):
  return {(t.storage.root or t.storage).key for t in tensors.values()}


def _read_zip(file):
  """(tensors, big_endian) from a zip archive, storages filled."""
  with zipfile.ZipFile(file) as archive:
    names = archive.namelist()
    pickles = [n for n in names if n.count("/") == 1 and n.endswith("/data.pkl")]
    if not pickles:
      raise _Corrupt("zip archive has no <top>/data.pkl record")
    top = pickles[0][: -len("data.pkl")]
    storages = {}
    data = archive.read(top + "data.pkl")
    tensors = _select_tensors(_SafeUnpickler(io.BytesIO(data), storages).load())
    byteorder = b"little"
    if top + "byteorder" in names:
      byteorder = archive.read(top + "byteorder").strip()
      if byteorder not in (b"little", b"big"):
        raise _Corrupt(f"unknown byteorder record {byteorder!r}")
    for key in sorted(_root_keys(tensors)):
      storage = storages[key]
      name = f"{top}data/{key}"
      if name not in names:
        raise _Corrupt(f"missing storage record {name!r}")
      expected = storage.numel * _itemsize(storage.dtype)
      size = archive.getinfo(name).file_size
      if size != expected:
        raise _Corrupt(f"storage record {name!r} holds {size} bytes, expected {expected}")
      storage.data = np.frombuffer(archive.read(name), np.uint8)
  return tensors, byteorder == b"big"


def _read_legacy(file):
  """(tensors, big_endian) from a legacy pickle stream, storages filled."""
  try:
    magic = _SafeUnpickler(file).load()
  except (pickle.UnpicklingError, EOFError, ValueError) as e:
    raise _Corrupt(f"not a PyTorch checkpoint (no magic number: {e})") from e
  if magic != _LEGACY_MAGIC:
    raise _Corrupt(f"not a PyTorch checkpoint (magic number {magic!r})")
  protocol = _SafeUnpickler(file).load()
  if protocol != _LEGACY_PROTOCOL:
    raise _Corrupt(f"unsupported legacy protocol version {protocol!r}")
  sys_info = _SafeUnpickler(file).load()
  if not isinstance(sys_info, dict):
    raise _Corrupt(f"bad sys_info record {sys_info!r}")
  big_endian = not sys_info.get("little_endian", True)
  storages = {}
  tensors = _select_tensors(_SafeUnpickler(file, storages).load())
  keys = _SafeUnpickler(file).load()
  if not (
    isinstance(keys, list) and all(isinstance(k, str) for k in keys) and set(keys) == set(storages)
  ):
    raise _Corrupt("storage key list does not match the storages in the pickle")
  needed = _root_keys(tensors)
  remaining = os.fstat(file.fileno()).st_size - file.tell()
  for key in keys:
    storage = storages[key]
    header = file.read(8)
    if len(header) < 8:
      raise _Corrupt(f"truncated before storage {key}")
    (numel,) = struct.unpack(">q" if big_endian else "<q", header)
    if numel != storage.numel:
      raise _Corrupt(f"storage {key} holds {numel} elements, expected {storage.numel}")
    nbytes = numel * _itemsize(storage.dtype)
    remaining -= 8 + nbytes
    if remaining < 0:
      raise _Corrupt(f"truncated inside storage {key}")
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
        raise _Corrupt("empty file")
      if head.startswith(b"PK\x03\x04"):
        tensors, big_endian = _read_zip(file)
      elif head[257:262] == b"ustar":
        raise _Corrupt("tar checkpoints (PyTorch < 0.1.10) are unsupported")
      elif head[:1] == b"\x80":
        tensors, big_endian = _read_legacy(file)
      else:
        raise _Corrupt(f"not a PyTorch checkpoint (starts with {head[:8]!r})")
      arrays = {k: _materialize(t, big_endian) for k, t in tensors.items()}
    except _Unsafe as e:
      raise UnsafePickleError(f"{path}: {e}") from None
    except _Corrupt as e:
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
