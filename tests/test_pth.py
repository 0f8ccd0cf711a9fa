"""poolnet_jax.weights.torch_io.pth (reading) against files written by torch itself."""

import collections
import io
import os
import pickle
import pickletools
import struct
import subprocess
import zipfile

import numpy as np
import pytest
import torch

from poolnet_jax.weights.torch_io import pth

FORMATS = ["zip", "legacy"]


def _save(obj, path, fmt):
  torch.save(obj, path, _use_new_zipfile_serialization=fmt == "zip")
  return path


def _numpy(tensor):
  tensor = tensor.detach().resolve_neg()
  if tensor.dtype == torch.bfloat16:
    return tensor.float().numpy()
  if tensor.dtype == torch.uint16:
    return tensor.to(torch.int32).numpy().astype(np.uint16)
  return tensor.numpy()


def _assert_same(arrays, tensors):
  """Same names in the same order, dtypes, shapes and bits."""
  assert list(arrays) == list(tensors)
  for name, tensor in tensors.items():
    expected, got = _numpy(tensor), arrays[name]
    assert isinstance(got, np.ndarray), name
    assert got.dtype == expected.dtype, name
    assert got.shape == expected.shape, name
    assert got.tobytes() == np.ascontiguousarray(expected).tobytes(), name


def _tricky_tensors():
  """Tensors covering every layout the reader has to undo."""
  gen = torch.Generator().manual_seed(0)
  grid = torch.randn(6, 10, generator=gen)
  long_vector = torch.randn(100, generator=gen)
  shared = torch.randn(4, 5, generator=gen)
  tensors = collections.OrderedDict(
    [
      ("fp32", torch.randn(3, 4, generator=gen)),
      ("fp16", torch.randn(2, 5, generator=gen).half()),
      ("fp64", torch.randn(7, generator=gen).double()),
      ("bf16", torch.randn(3, generator=gen).bfloat16()),
      ("counter", torch.tensor(7)),
      ("big_counter", torch.tensor(2**40 + 3)),
      ("int32", torch.tensor([[-5, 6]], dtype=torch.int32)),
      ("uint8", torch.tensor([0, 255], dtype=torch.uint8)),
      ("mask", torch.tensor([True, False])),
      ("empty", torch.zeros(0, 3)),
      ("transposed_slice", grid[1:5, 2:9:3].t()),
      ("offset_slice", long_vector[17:29]),
      ("shared_rows", shared[1:3]),
      ("shared_t", shared.t()),
      ("param", torch.nn.Parameter(torch.randn(2, 2, generator=gen))),
      ("specials", torch.tensor([float("nan"), -0.0, float("inf"), 1e-40])),
      ("tagged", torch.randn(3, generator=gen)),
      ("tagged_param", torch.nn.Parameter(torch.randn(2, generator=gen))),
    ]
  )
  tensors["tagged"].note = "pickled via _rebuild_from_type_v2"
  tensors["tagged_param"].note = "pickled via _rebuild_parameter_with_state"
  assert not tensors["transposed_slice"].is_contiguous()
  assert tensors["transposed_slice"].storage_offset() > 0
  assert tensors["offset_slice"].storage_offset() == 17
  assert (
    tensors["shared_rows"].untyped_storage().data_ptr()
    == tensors["shared_t"].untyped_storage().data_ptr()
  )
  return tensors


def _small_module():
  torch.manual_seed(0)
  module = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
  module.train()(torch.randn(2, 3, 8, 8))  # Moves running stats, counter.
  return module


@pytest.mark.parametrize("fmt", FORMATS)
def test_reads_every_tensor_layout(tmp_path, fmt):
  tensors = _tricky_tensors()
  path = _save(tensors, tmp_path / "w.pth", fmt)
  _assert_same(pth.read_state_dict(path), tensors)


def test_zip_shares_storages_and_reads_v3_and_neg_views(tmp_path):
  tensors = _tricky_tensors()
  tensors["uint16"] = torch.tensor([1, 65535], dtype=torch.int32).to(
    torch.uint16
  )  # Pickled with _rebuild_tensor_v3 and a torch dtype.
  tensors["neg_view"] = torch._neg_view(torch.arange(3.0))
  path = _save(tensors, tmp_path / "w.pth", "zip")
  with zipfile.ZipFile(path) as archive:
    records = [n for n in archive.namelist() if "/data/" in n]
  assert len(records) == len(tensors) - 1  # shared_rows and shared_t.
  _assert_same(pth.read_state_dict(path), tensors)


@pytest.mark.parametrize("fmt", FORMATS)
def test_reads_module_state_dict_with_metadata(tmp_path, fmt):
  state = _small_module().state_dict()
  assert hasattr(state, "_metadata")
  assert int(state["1.num_batches_tracked"]) == 1
  path = _save(state, tmp_path / "m.pth", fmt)
  _assert_same(pth.read_state_dict(path), state)


@pytest.mark.parametrize("fmt", FORMATS)
def test_data_parallel_prefix_is_stripped(tmp_path, fmt):
  state = _small_module().state_dict()
  prefixed = collections.OrderedDict(("module." + k, v) for k, v in state.items())
  arrays = pth.read_state_dict(_save(prefixed, tmp_path / "dp.pth", fmt))
  assert all(k.startswith("module.") for k in arrays)
  _assert_same(pth.strip_prefix(arrays), state)
  partly = dict(arrays, other=np.zeros(1))
  assert list(pth.strip_prefix(partly)) == list(partly)


@pytest.mark.parametrize("container", ["state_dict", "model"])
def test_nested_state_dict_is_found(tmp_path, container):
  state = _small_module().state_dict()
  obj = {"epoch": 3, "arch": "poolnet", "lr": 0.1, container: state}
  _assert_same(pth.read_state_dict(_save(obj, tmp_path / "c.pth", "zip")), state)


@pytest.mark.filterwarnings("ignore:TypedStorage is deprecated")
def test_legacy_storage_views(tmp_path):
  """torch 0.4.1 could pickle a storage as a view of a bigger root storage."""
  root = torch.arange(10, dtype=torch.float32)
  view = torch.arange(3.0, 7.0).reshape(2, 2)  # Pickled as root[3:7].

  class ViewPickler(pickle.Pickler):
    def persistent_id(self, obj):
      if not isinstance(obj, torch.storage.TypedStorage):
        return None
      is_root = obj.data_ptr() == root.untyped_storage().data_ptr()
      return ("storage", torch.FloatStorage, "root", "cpu", 10, None if is_root else ("view", 3, 4))

  stream = io.BytesIO()
  for header in [
    torch.serialization.MAGIC_NUMBER,
    torch.serialization.PROTOCOL_VERSION,
    {
      "protocol_version": torch.serialization.PROTOCOL_VERSION,
      "little_endian": True,
      "type_sizes": {"short": 2, "int": 4, "long": 8},
    },
  ]:
    pickle.dump(header, stream, protocol=2)
  ViewPickler(stream, protocol=2).dump({"root": root, "view": view})
  pickle.dump(["root"], stream, protocol=2)
  stream.write(struct.pack("<q", 10) + root.numpy().tobytes())
  path = tmp_path / "views.pth"
  path.write_bytes(stream.getvalue())
  reference = torch.load(path)
  torch.testing.assert_close(reference["view"], view, rtol=0, atol=0)
  _assert_same(pth.read_state_dict(path), reference)


def test_as_float32_casts_floats_only(tmp_path):
  tensors = {
    "h": torch.tensor([1.5, -2.0]).half(),
    "d": torch.tensor([0.1]).double(),
    "n": torch.tensor(3),
  }
  arrays = pth.read_state_dict(_save(tensors, tmp_path / "f.pth", "zip"), as_float32=True)
  assert arrays["h"].dtype == arrays["d"].dtype == np.float32
  np.testing.assert_array_equal(arrays["d"], np.float32(0.1))
  assert arrays["n"].dtype == np.int64


# --- Files saved on a GPU (crafted: this machine has none) ------------------


def _main_pickle_span(data):
  """(start, end) of the object pickle in a legacy file."""
  stream = io.BytesIO(data)
  for _ in range(3):  # magic number, protocol version, sys_info.
    pickle.load(stream)
  start = stream.tell()
  for _ in pickletools.genops(stream):
    pass
  return start, stream.tell()


def _as_gpu_pickle(data):
  """Pickle bytes as torch <= 1.12 writes them for tensors on cuda:0."""
  data = data.replace(b"X\x03\x00\x00\x00cpu", b"X\x06\x00\x00\x00cuda:0")
  for kind in [b"FloatStorage", b"LongStorage"]:
    data = data.replace(b"ctorch\n" + kind, b"ctorch.cuda\n" + kind)
  return data


def _globals_and_strings(data):
  return {arg for op, arg, _ in pickletools.genops(data) if op.name in ("GLOBAL", "BINUNICODE")}


def _rewrite_zip(src, dst, replace=None, drop=()):
  """Copies a zip, with record contents replaced or dropped by name."""
  with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
    for name in zin.namelist():
      if not any(name.endswith(d) for d in drop):
        data = zin.read(name)
        for suffix, fn in (replace or {}).items():
          if name.endswith(suffix):
            data = fn(data)
        zout.writestr(name, data)
  return dst


def test_legacy_gpu_file_reads_to_cpu(tmp_path):
  state = _small_module().state_dict()
  data = _save(state, tmp_path / "cpu.pth", "legacy").read_bytes()
  start, end = _main_pickle_span(data)
  gpu_pickle = _as_gpu_pickle(data[start:end])
  tokens = _globals_and_strings(gpu_pickle)
  assert {"torch.cuda FloatStorage", "torch.cuda LongStorage", "cuda:0"} <= tokens
  assert not {"cpu", "torch FloatStorage"} & tokens
  path = tmp_path / "gpu.pth"
  path.write_bytes(data[:start] + gpu_pickle + data[end:])
  _assert_same(pth.read_state_dict(path), torch.load(path, map_location="cpu"))
  _assert_same(pth.read_state_dict(path), state)


def test_zip_gpu_files_read_to_cpu(tmp_path, monkeypatch):
  state = _small_module().state_dict()
  with monkeypatch.context() as patch:  # torch >= 2: cuda location only.
    patch.setattr(torch.serialization, "location_tag", lambda _: "cuda:0")
    new_style = _save(state, tmp_path / "new.pth", "zip")
  old_style = _rewrite_zip(new_style, tmp_path / "old.pth", {"data.pkl": _as_gpu_pickle})
  for path, storage in [(new_style, "torch FloatStorage"), (old_style, "torch.cuda FloatStorage")]:
    with zipfile.ZipFile(path) as archive:
      tokens = _globals_and_strings(archive.read("new/data.pkl"))
    assert {storage, "cuda:0"} <= tokens and "cpu" not in tokens
    _assert_same(pth.read_state_dict(path), state)
    _assert_same(pth.read_state_dict(path), torch.load(path, map_location="cpu"))


# --- Malicious pickles -------------------------------------------------------


class _Payload:
  """Pickles as a call of `fn(*args)`, run by any unrestricted unpickler."""

  def __init__(self, fn, *args):
    self.fn, self.args = fn, args

  def __reduce__(self):
    return self.fn, self.args


PAYLOADS = {
  "posix.system": lambda m: _Payload(os.system, f"touch {m}"),
  "os.system": lambda m: _Payload(os.system, f"touch {m}"),
  "builtins.eval": lambda m: _Payload(eval, f'open({str(m)!r}, "w").close()'),
  "subprocess.Popen": lambda m: _Payload(subprocess.Popen, ["touch", str(m)]),
}


def _evil_file(tmp_path, fmt, name):
  marker = tmp_path / "pwned"
  obj = {"w": torch.ones(2), "x": PAYLOADS[name](marker)}
  path = _save(obj, tmp_path / f"evil_{fmt}.pth", fmt)
  if name == "os.system":  # Python writes os.system as posix.system.

    def fix(data):
      return data.replace(b"cposix\nsystem\n", b"cos\nsystem\n")

    if fmt == "zip":
      path = _rewrite_zip(path, tmp_path / "os.pth", {"data.pkl": fix})
    else:
      path.write_bytes(fix(path.read_bytes()))
  return path, marker


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("name", list(PAYLOADS))
def test_malicious_global_is_refused_and_never_runs(tmp_path, fmt, name):
  path, marker = _evil_file(tmp_path, fmt, name)
  with pytest.raises(pth.UnsafePickleError, match=f"'{name}'") as error:
    pth.read_state_dict(path)
  assert str(path) in str(error.value)
  assert not marker.exists()
  # The payload is live: an unrestricted load does run it.
  loaded = torch.load(path, weights_only=False)
  if isinstance(loaded["x"], subprocess.Popen):
    loaded["x"].wait()
  assert marker.exists()


@pytest.mark.parametrize(
  "payload",
  [
    b"\x80\x04\x95\x00\x00\x00\x00\x00\x00\x00\x00\x8c\x02os\x8c\x06system"
    b"\x93\x8c\x04true\x85R.",  # STACK_GLOBAL (protocol 4).
    b'(S"true"\nios\nsystem\n.',  # INST (protocol 0).
    b"\x80\x02ctorch\nload\nX\x01\x00\x00\x00x\x85R.",  # Torch, not allowed.
  ],
)
def test_other_global_opcodes_are_gated(tmp_path, payload):
  good = _save({"w": torch.ones(1)}, tmp_path / "good.pth", "zip")
  path = _rewrite_zip(good, tmp_path / "bad.pth", {"data.pkl": lambda _: payload})
  with pytest.raises(pth.UnsafePickleError, match=r"os\.system|torch\.load"):
    pth.read_state_dict(path)


@pytest.mark.parametrize(
  "payload",
  [
    b"\x80\x02ctorch\nFloatStorage\nK\x03\x85R.",  # Calling a storage type.
    b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\n}X\x01\x00\x00\x00a"
    b"K\x01sb.",  # BUILD poisoning an allowed function.
    b"\x80\x02X\x03\x00\x00\x00abcQ.",  # Persistent id that is no storage.
    b"\x80\x02(X\x07\x00\x00\x00storagecbuiltins\nprint\nX\x01\x00\x00\x000"
    b"X\x03\x00\x00\x00cpuK\x01tQ.",  # Storage type that is no storage type.
  ],
)
def test_allowed_pieces_cannot_be_misused(tmp_path, payload):
  good = _save({"w": torch.ones(1)}, tmp_path / "good.pth", "zip")
  path = _rewrite_zip(good, tmp_path / "bad.pth", {"data.pkl": lambda _: payload})
  with pytest.raises(pth.UnsafePickleError, match="bad.pth"):
    pth.read_state_dict(path)


# --- Truncated and corrupt files ---------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_truncated_files_raise_pth_error(tmp_path, fmt):
  data = _save(_small_module().state_dict(), tmp_path / "full.pth", fmt).read_bytes()
  path = tmp_path / "cut.pth"
  n = len(data)
  for cut in sorted({0, 1, 2, 16, 100, 200, n // 3, n // 2, n - 9, n - 1}):
    path.write_bytes(data[:cut])
    with pytest.raises(pth.PthError, match="cut.pth"):
      pth.read_state_dict(path)


@pytest.mark.parametrize("head", [b"", b"PK\x03\x04", b"\x80\x02", b"hello"])
def test_garbage_raises_pth_error(tmp_path, head):
  garbage = np.random.default_rng(0).integers(0, 256, 3000, np.uint8)
  path = tmp_path / "junk.pth"
  path.write_bytes(head + garbage.tobytes())
  with pytest.raises(pth.PthError, match="junk.pth"):
    pth.read_state_dict(path)


def test_wrong_magic_number(tmp_path):
  data = _save({"w": torch.ones(2)}, tmp_path / "l.pth", "legacy").read_bytes()
  stream = io.BytesIO(data)
  pickle.load(stream)
  path = tmp_path / "magic.pth"
  path.write_bytes(pickle.dumps(12345, protocol=2) + data[stream.tell() :])
  with pytest.raises(pth.PthError, match="magic.pth.*magic number"):
    pth.read_state_dict(path)


def test_zip_missing_bad_size_and_bad_crc_storage(tmp_path):
  src = _save({"a": torch.ones(2), "b": torch.zeros(3)}, tmp_path / "z.pth", "zip")
  missing = _rewrite_zip(src, tmp_path / "missing.pth", drop=["data/1"])
  with pytest.raises(pth.PthError, match=r"missing.pth.*z/data/1"):
    pth.read_state_dict(missing)
  short = _rewrite_zip(src, tmp_path / "short.pth", {"data/1": lambda d: d[:4]})
  with pytest.raises(pth.PthError, match=r"short.pth.*4 bytes, expected 12"):
    pth.read_state_dict(short)
  data = bytearray(src.read_bytes())
  with zipfile.ZipFile(src) as archive:
    offset = archive.getinfo("z/data/0").header_offset
  name_len, extra_len = struct.unpack("<HH", data[offset + 26 : offset + 30])
  data[offset + 30 + name_len + extra_len] ^= 0xFF  # First payload byte.
  (tmp_path / "crc.pth").write_bytes(bytes(data))
  with pytest.raises(pth.PthError, match="crc.pth"):
    pth.read_state_dict(tmp_path / "crc.pth")
