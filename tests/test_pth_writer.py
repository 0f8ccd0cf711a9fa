"""poolnet_jax.weights.torch_io.pth_writer: files that torch itself loads back."""

import collections
import os
import struct
import zipfile

import numpy as np
import pytest
import torch

from poolnet_jax.weights.torch_io import pth, pth_writer
from test_pth import _small_module


def _arrays_to_write():
  rng = np.random.default_rng(0)
  return collections.OrderedDict(
    [
      ("conv.weight", rng.standard_normal((4, 3, 3, 3), np.float32)),
      ("half", rng.standard_normal(5).astype(np.float16)),
      ("double", rng.standard_normal((2, 2))),
      ("bn.num_batches_tracked", np.array(12345678901, np.int64)),
      ("ints", np.arange(-3, 3, dtype=np.int32)),
      ("bytes", np.array([0, 7, 255], np.uint8)),
      ("mask", np.array([[True], [False]])),
      ("empty", np.zeros((0, 2), np.float32)),
      ("big_endian", np.arange(6, dtype=">f4").reshape(2, 3)),
      ("strided", rng.standard_normal((5, 6), np.float32)[::2, 1::2].T),
      ("specials", np.array([np.nan, -0.0, np.inf, 1e-45], np.float32)),
    ]
  )


def _assert_arrays_equal(got, expected):
  assert list(got) == list(expected)
  for name, array in expected.items():
    value = got[name]
    value = value.numpy() if isinstance(value, torch.Tensor) else value
    assert value.dtype == array.dtype.newbyteorder("="), name
    assert value.shape == array.shape, name
    assert value.tobytes() == array.astype(value.dtype).tobytes(), name


def test_written_file_loads_in_torch_and_back(tmp_path):
  arrays = _arrays_to_write()
  path = tmp_path / "out.pth"
  pth_writer.write_state_dict(path, arrays)
  loaded = torch.load(path, weights_only=True)
  assert isinstance(loaded, collections.OrderedDict)
  _assert_arrays_equal(loaded, arrays)
  _assert_arrays_equal(pth.read_state_dict(path), arrays)
  with zipfile.ZipFile(path) as archive:
    infos = archive.infolist()
  data = path.read_bytes()
  for info in infos:
    assert info.compress_type == zipfile.ZIP_STORED
    name_len, extra_len = struct.unpack(
      "<HH", data[info.header_offset + 26 : info.header_offset + 30]
    )
    assert (info.header_offset + 30 + name_len + extra_len) % 64 == 0


def test_written_state_dict_loads_into_module_strictly(tmp_path):
  source = _small_module()
  arrays = {
    k: v.numpy() + (1 if v.is_floating_point() else 41) for k, v in source.state_dict().items()
  }
  path = tmp_path / "module.pth"
  pth_writer.write_state_dict(path, arrays)
  target = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
  target.load_state_dict(torch.load(path), strict=True)
  _assert_arrays_equal(target.state_dict(), arrays)
  assert int(target[1].num_batches_tracked) == 42


def test_write_is_atomic_and_rejects_bad_input(tmp_path):
  path = tmp_path / "keep.pth"
  pth_writer.write_state_dict(path, {"a": np.ones(2, np.float32)})
  pth_writer.write_state_dict(path, {"b": np.zeros(3, np.float64)})
  assert list(pth.read_state_dict(path)) == ["b"]
  before = path.read_bytes()
  for bad in [{"u": np.ones(2, np.uint16)}, {"o": np.array([None])}, {3: np.ones(1)}]:
    with pytest.raises(pth.PthError, match="keep.pth"):
      pth_writer.write_state_dict(path, bad)
  assert path.read_bytes() == before
  assert sorted(os.listdir(tmp_path)) == ["keep.pth"]
