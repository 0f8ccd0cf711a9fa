"""Torch-free writing of `.pth` state_dicts in torch's zip layout.

The pickle is emitted opcode by opcode (no pickler runs), with each tensor as
`torch._utils._rebuild_tensor_v2` over a storage record `archive/data/<k>`;
records are stored uncompressed and 64-byte aligned, as torch writes them.
`pth.read_state_dict` and `torch.load` read the result.
"""

import math
import os
import struct
import tempfile
import zipfile

import numpy as np

from poolnet_jax.weights.torch_io.pth import PthError

_ALIGNMENT = 64  # torch aligns storage records to 64 bytes.


class _Unwritable(Exception):
  """A state_dict entry with no torch counterpart (turned into PthError)."""


_WRITE_STORAGES = {
  np.dtype(np.float32): "FloatStorage",
  np.dtype(np.float64): "DoubleStorage",
  np.dtype(np.float16): "HalfStorage",
  np.dtype(np.int64): "LongStorage",
  np.dtype(np.int32): "IntStorage",
  np.dtype(np.int16): "ShortStorage",
  np.dtype(np.int8): "CharStorage",
  np.dtype(np.uint8): "ByteStorage",
  np.dtype(np.bool_): "BoolStorage",
  np.dtype(np.complex64): "ComplexFloatStorage",
  np.dtype(np.complex128): "ComplexDoubleStorage",
}


class _PickleWriter:
  """Emits the protocol-2 opcodes of a torch state_dict pickle."""

  def __init__(self):
    self.out = bytearray(b"\x80\x02")

  def glob(self, module, name):
    self.out += b"c%s\n%s\n" % (module.encode(), name.encode())

  def string(self, text):
    data = text.encode("utf-8")
    self.out += b"X" + struct.pack("<I", len(data)) + data

  def integer(self, value):
    if 0 <= value < 256:
      self.out += b"K" + bytes([value])
    elif 0 <= value < 65536:
      self.out += b"M" + struct.pack("<H", value)
    elif -(2**31) <= value < 2**31:
      self.out += b"J" + struct.pack("<i", value)
    else:
      data = value.to_bytes((value.bit_length() + 8) // 8, "little", signed=True)
      self.out += b"\x8a" + bytes([len(data)]) + data

  def int_tuple(self, values):
    self.out += b"("
    for v in values:
      self.integer(v)
    self.out += b"t"

  def empty_ordered_dict(self):
    self.glob("collections", "OrderedDict")
    self.out += b")R"

  def tensor(self, storage_name, key, shape, strides):
    """`_rebuild_tensor_v2(storage, 0, shape, strides, False, {})`."""
    self.glob("torch._utils", "_rebuild_tensor_v2")
    self.out += b"(("
    self.string("storage")
    self.glob("torch", storage_name)
    self.string(key)
    self.string("cpu")
    self.integer(math.prod(shape))
    self.out += b"tQ"  # The persistent id tuple, then BINPERSID.
    self.integer(0)
    self.int_tuple(shape)
    self.int_tuple(strides)
    self.out += b"\x89"  # requires_grad=False
    self.empty_ordered_dict()  # backward_hooks
    self.out += b"tR"


def _contiguous_strides(shape):
  strides, step = [], 1
  for n in reversed(shape):
    strides.append(step)
    step *= max(n, 1)
  return tuple(reversed(strides))


def _state_dict_records(state_dict):
  """[(record name, bytes or array)] of the zip layout for {name: array}."""
  writer, storages = _PickleWriter(), []
  writer.empty_ordered_dict()
  items = list(state_dict.items())
  for start in range(0, len(items), 1000):  # SETITEMS batches, as pickle.
    writer.out += b"("
    for name, value in items[start : start + 1000]:
      if not isinstance(name, str):
        raise _Unwritable(f"tensor names must be strings, got {name!r}")
      array = np.asarray(value)
      storage_name = _WRITE_STORAGES.get(array.dtype.newbyteorder("="))
      if storage_name is None:
        raise _Unwritable(f"{name}: dtype {array.dtype} has no torch storage")
      array = np.asarray(array, array.dtype.newbyteorder("<"), order="C")
      key = str(len(storages))
      writer.string(name)
      writer.tensor(storage_name, key, array.shape, _contiguous_strides(array.shape))
      storages.append((f"data/{key}", array))
    writer.out += b"u"
  writer.out += b"."
  return (
    [("data.pkl", bytes(writer.out)), ("byteorder", b"little")] + storages + [("version", b"3\n")]
  )


def _aligned_zip_info(name, size, offset):
  """A ZIP_STORED entry whose data starts on a 64-byte boundary."""
  info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
  info.compress_type = zipfile.ZIP_STORED
  zip64_extra = 20 if size * 1.05 > zipfile.ZIP64_LIMIT else 0  # As zipfile.
  data_start = offset + 30 + len(name.encode()) + 4 + zip64_extra
  pad = -data_start % _ALIGNMENT
  info.extra = b"FB" + struct.pack("<H", pad) + b"Z" * pad
  return info


def write_state_dict(path, state_dict):
  """Writes {name: array} as a zip `.pth` that `torch.load` reads back.

  Records follow torch's own layout (`archive/data.pkl`, `archive/data/<k>`,
  `byteorder`, `version`), stored uncompressed and 64-byte aligned. The file
  is written to a temporary name next to `path`, then renamed over it.

  Raises:
    PthError: a name is not a string or an array has no torch dtype.
  """
  path = os.fspath(path)
  try:
    records = _state_dict_records(state_dict)
  except _Unwritable as e:
    raise PthError(f"{path}: {e}") from None
  fd, tmp = tempfile.mkstemp(
    dir=os.path.dirname(os.path.abspath(path)), prefix=f".{os.path.basename(path)}.", suffix=".tmp"
  )
  try:
    with os.fdopen(fd, "wb") as file:
      with zipfile.ZipFile(file, "w", zipfile.ZIP_STORED) as archive:
        for name, data in records:
          data = data if isinstance(data, bytes) else data.tobytes()
          info = _aligned_zip_info(f"archive/{name}", len(data), file.tell())
          archive.writestr(info, data)
      file.flush()
      os.fsync(file.fileno())
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise
