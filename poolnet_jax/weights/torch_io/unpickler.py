"""The restricted unpickler of `.pth` reading: what a state_dict's pickle may build.

Each global a state_dict needs (tensor and parameter rebuilders, storage and dtype
names, `OrderedDict`, `torch.Size`) resolves to a local stand-in here; any other
global, a call of a constant, or a BUILD on a stand-in raises `Unsafe` before anything
runs. Tensors come out as `Tensor` records over `_Storage`s named by persistent ids,
which `pth.py` fills with the file's bytes and materialises.
"""

import _compat_pickle
import collections
import pickle

import numpy as np

BF16 = "bfloat16"  # Read as uint16 bits, widened to float32 (no numpy type).

# Storage class name -> element dtype (little-endian).
_STORAGE_DTYPES = {
  "FloatStorage": "<f4",
  "DoubleStorage": "<f8",
  "HalfStorage": "<f2",
  "BFloat16Storage": BF16,
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
  "bfloat16": BF16,
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


class Corrupt(Exception):
  """What is wrong, without the file name (pth.py adds it)."""


class Unsafe(Exception):
  """Refused pickle content, without the file name (pth.py adds it)."""


class _StandIn:
  """Base of every object a pickle can reach: BUILD (mutation) is refused."""

  __slots__ = ()

  def __setstate__(self, state):
    raise Unsafe(f"BUILD on {self!r} refused")


class _Token(_StandIn):
  """A named constant: a 'storage' type, a torch 'dtype' or a 'tensor' class.

  `dtype` is the numpy element type it stands for (BF16 or None possible).
  """

  __slots__ = ("name", "kind", "dtype")

  def __init__(self, name, kind, dtype=None):
    self.name, self.kind, self.dtype = name, kind, dtype

  def __call__(self, *args):
    raise Unsafe(f"call of {self.name} refused")

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
    item = itemsize(self.dtype)
    start = self.offset * item
    return self.root.data[start : start + self.numel * item]


class Tensor(_StandIn):
  """A tensor recorded by `_rebuild_tensor*`, materialised after loading."""

  __slots__ = ("storage", "offset", "size", "stride", "dtype", "metadata")

  def __init__(self, storage, offset, size, stride, dtype=None, metadata=None):
    if not isinstance(storage, _Storage):
      raise Corrupt(f"tensor built from {type(storage).__name__}, not a storage")
    if not (
      _is_int_tuple(size)
      and _is_int_tuple(stride)
      and len(size) == len(stride)
      and _is_int(offset)
      and offset >= 0
      and min((*size, *stride), default=0) >= 0
    ):
      raise Corrupt(f"bad tensor geometry size={size!r} stride={stride!r} offset={offset!r}")
    if metadata is not None and not isinstance(metadata, dict):
      raise Corrupt(f"bad tensor metadata {metadata!r}")
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


def itemsize(dtype):
  return 2 if dtype == BF16 else np.dtype(dtype).itemsize


def _rebuild_tensor_v2(
  storage, offset, size, stride, requires_grad=False, backward_hooks=None, metadata=None
):
  del requires_grad, backward_hooks
  return Tensor(storage, offset, size, stride, metadata=metadata)


def _rebuild_tensor_v3(
  storage, offset, size, stride, requires_grad, backward_hooks, dtype, metadata=None
):
  del requires_grad, backward_hooks
  if not _is_token(dtype, "dtype"):
    raise Corrupt(f"_rebuild_tensor_v3 with dtype {dtype!r}")
  return Tensor(storage, offset, size, stride, dtype.dtype, metadata)


def _rebuild_tensor(storage, offset, size, stride):
  return Tensor(storage, offset, size, stride)


def _rebuild_parameter(data, requires_grad, backward_hooks, state=None):
  del requires_grad, backward_hooks, state
  if not isinstance(data, Tensor):
    raise Corrupt(f"parameter wraps {type(data).__name__}, not a tensor")
  return data


def _rebuild_from_type_v2(func, new_type, args, state):
  del state
  if not (isinstance(func, _Callable) and _is_token(new_type, "tensor")):
    raise Unsafe(f"_rebuild_from_type_v2({func!r}, {new_type!r}) refused")
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


class SafeUnpickler(pickle.Unpickler):
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
      raise Unsafe(
        f"global '{py3[0]}.{py3[1]}'{spelled} is not allowed in a"
        " state_dict (refused, nothing was run)"
      )
    return stand_in

  def persistent_load(self, pid):
    if self.storages is None:
      raise Unsafe(f"unexpected persistent id {pid!r}")
    return _storage_from_pid(pid, self.storages)


def _storage_from_pid(pid, storages):
  """The `_Storage` for a persistent id (legacy 6-tuple or zip 5-tuple)."""
  if not (isinstance(pid, tuple) and len(pid) in (5, 6) and pid[0] in ("storage", b"storage")):
    raise Unsafe(f"persistent id {pid!r} is not a storage record")
  storage_type, key, location, numel = pid[1:5]
  view = pid[5] if len(pid) == 6 else None
  if not (
    _is_token(storage_type, "storage")
    and isinstance(key, str)
    and isinstance(location, str)
    and _is_int(numel)
    and numel >= 0
  ):
    raise Unsafe(f"malformed storage record {pid!r}")
  if key not in storages:
    storages[key] = _Storage(storage_type.dtype, numel, key)
  root = storages[key]
  if root.dtype != storage_type.dtype or root.numel != numel:
    raise Corrupt(f"storage {key} declared twice with different types")
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
    raise Corrupt(f"bad storage view {view!r} of storage {key}")
  return _Storage(root.dtype, view[2], view[0], root, view[1])
