"""model.safetensors: the converter writes it, load_pretrained reads it, bit-exact to the .pth."""

import json
import os
import stat

import jax
import numpy as np
import pytest
import safetensors
import safetensors.numpy
import safetensors.torch
import torch

import poolnet_jax
from poolnet_jax.cli import convert
from poolnet_jax.weights import pretrained
from poolnet_jax.weights import safetensors_io
from poolnet_jax.weights.torch_io import mapping
from random_weights import TINY, random_variables
from reference import torch_poolnet


def _assert_bit_equal(got, want):
  """Same tree, same dtypes, same bits."""
  assert jax.tree_util.tree_structure(got) == jax.tree_util.tree_structure(want)
  for (path, a), b in zip(
    jax.tree_util.tree_leaves_with_path(got), jax.tree_util.tree_leaves(want)
  ):
    a, b = np.asarray(a), np.asarray(b)
    assert a.dtype == b.dtype, path
    np.testing.assert_array_equal(
      a.reshape(-1).view(np.uint8), b.reshape(-1).view(np.uint8), err_msg=str(path)
    )


# The original network's spec as JSON, written out by hand (models/spec.py's fields).
ORIGINAL_RESNET50 = {
  "variant": "resnet50",
  "width": 1.0,
  "stages": [3, 4, 6, 3],
  "resnet_style": "caffe",
  "dtype": "float32",
}


def _header(path):
  with safetensors.safe_open(str(path), framework="numpy") as file:
    return file.metadata()


@pytest.fixture(scope="module")
def resnet_pth(tmp_path_factory):
  """A torch-made full-size ResNet-50 PoolNet (it has int64 BatchNorm counters), legacy format."""
  model = torch_poolnet.build("resnet50")
  torch_poolnet.randomize_(model, seed=7)
  path = tmp_path_factory.mktemp("pth") / "final.pth"
  state = model.state_dict()
  state["base.resnet.bn1.num_batches_tracked"] += 12345  # not all zeros: its bits are checked
  torch.save(state, path, _use_new_zipfile_serialization=False)
  return path, state


@pytest.fixture(scope="module")
def tiny_variables():
  return random_variables(poolnet_jax.create_model("resnet50", **TINY), seed=3)


def test_convert_writes_safetensors_bit_exact_to_the_pth(resnet_pth, tmp_path, capsys):
  src, state = resnet_pth
  assert convert.main(["convert", str(src), str(tmp_path / "out")]) == 0
  assert "(poolnet.json, variables/, model.safetensors)" in capsys.readouterr().out
  file = tmp_path / "out" / "model.safetensors"
  header = _header(file)
  assert sorted(header) == ["format", "model"] and header["format"] == "poolnet-jax"
  assert json.loads(header["model"]) == ORIGINAL_RESNET50
  assert stat.S_IMODE(file.stat().st_mode) == 0o666 & ~_umask()
  # torch reads back the .pth's state_dict: names, dtypes (int64 counters), bits.
  loaded = safetensors.torch.load_file(file)
  assert sorted(loaded) == sorted(state)
  for key, tensor in state.items():
    assert loaded[key].dtype == tensor.dtype, key
    assert torch.equal(loaded[key], tensor), key
  # load_pretrained of the file and of the folder = load_torch_checkpoint of the .pth.
  _, want = poolnet_jax.load_torch_checkpoint(src)
  model, variables = poolnet_jax.load_pretrained(file)
  assert (model.backbone, model.edge, model.width) == ("resnet50", False, 1.0)
  _assert_bit_equal(variables, want)
  _, from_orbax = poolnet_jax.load_pretrained(tmp_path / "out")  # both there: orbax
  _assert_bit_equal(from_orbax, want)


def test_safetensors_only_folder_loads_and_overwrite_drops_the_other_format(
  resnet_pth, tmp_path, tiny_variables, capsys
):
  src, _ = resnet_pth
  dst = tmp_path / "out"
  poolnet_jax.save_pretrained(dst, "resnet50", tiny_variables, **TINY)  # a previous model
  (dst / "notes.txt").write_text("mine")
  assert convert.main(["convert", str(src), str(dst), "--format", "safetensors"]) == 2
  assert "--overwrite" in capsys.readouterr().err
  assert (
    convert.main(["convert", str(src), str(dst), "--format", "safetensors", "--overwrite"]) == 0
  )
  assert sorted(p.name for p in dst.iterdir()) == ["model.safetensors", "notes.txt"]
  assert pretrained.is_model_dir(dst)
  _, want = poolnet_jax.load_torch_checkpoint(src)
  model, variables = poolnet_jax.load_pretrained(dst)
  assert model.width == 1.0
  _assert_bit_equal(variables, want)
  assert convert.main(["convert", str(src), str(dst), "--format", "orbax", "--overwrite"]) == 0
  assert sorted(p.name for p in dst.iterdir()) == ["notes.txt", "poolnet.json", "variables"]


def test_save_safetensors_keeps_the_model_spec(tiny_variables, tmp_path):
  path = tmp_path / "tiny.safetensors"
  pretrained.save_safetensors(path, "resnet50", tiny_variables, **TINY)
  meta = _header(path)
  assert json.loads(meta["model"]) == {**ORIGINAL_RESNET50, "width": 0.125, "stages": [1, 1, 1, 1]}
  model, variables = poolnet_jax.load_pretrained(path)
  assert (model.width, model.stages) == (0.125, (1, 1, 1, 1))
  _assert_bit_equal(variables, jax.tree_util.tree_map(np.asarray, tiny_variables))
  # The tensors are to_state_dict's, names and all.
  got = safetensors.numpy.load_file(path)
  want = mapping.to_state_dict(tiny_variables)
  assert sorted(got) == sorted(want)
  for key in want:
    assert got[key].dtype == want[key].dtype and np.array_equal(got[key], want[key]), key


def test_save_safetensors_refuses_variables_of_another_model(tiny_variables, tmp_path):
  path = tmp_path / "x.safetensors"
  with pytest.raises(
    mapping.CheckpointMismatch,
    match=r"do not fit PoolNet variant resnet50:"
    r"\n  216 missing: base\.resnet\.layer1\.1\.conv1\.weight",
  ):
    pretrained.save_safetensors(path, "resnet50", tiny_variables)  # overrides forgotten
  assert not path.exists() and not list(tmp_path.iterdir())


def test_file_without_metadata_is_matched_by_its_names(tmp_path):
  full = torch_poolnet.build("vgg16")
  torch_poolnet.randomize_(full, seed=2)
  path = tmp_path / "plain.safetensors"
  safetensors.torch.save_file(full.state_dict(), path)  # what a torch user would write
  assert _header(path) is None
  model, variables = poolnet_jax.load_pretrained(path)
  assert (model.backbone, model.edge) == ("vgg16", False)
  got = mapping.to_state_dict(variables)
  for key, tensor in full.state_dict().items():
    np.testing.assert_array_equal(got[key], tensor.numpy(), err_msg=key)


def _write(path, state_dict, **metadata):
  safetensors.numpy.save_file(state_dict, str(path), metadata=metadata or None)


def test_a_file_written_before_the_model_spec_loads(tiny_variables, tmp_path):
  """Its header holds {"variant", "overrides"}, as the converter wrote until 2026-12-07."""
  path = tmp_path / "old.safetensors"
  overrides = json.dumps({"width": 0.125, "stages": [1, 1, 1, 1]})
  _write(
    path,
    mapping.to_state_dict(tiny_variables),
    format="poolnet-jax",
    variant="resnet50",
    overrides=overrides,
  )
  model, variables = poolnet_jax.load_pretrained(path)
  assert (model.backbone, model.width, model.stages) == ("resnet50", 0.125, (1, 1, 1, 1))
  _assert_bit_equal(variables, jax.tree_util.tree_map(np.asarray, tiny_variables))


def test_metadata_file_with_missing_unexpected_and_mis_shaped_names(tiny_variables, tmp_path):
  state = dict(mapping.to_state_dict(tiny_variables))
  del state["score.score.bias"]
  state["extra.weight"] = np.zeros(3, np.float32)
  state["base.resnet.conv1.weight"] = np.zeros((8, 3, 3, 3), np.float32)
  path = tmp_path / "damaged.safetensors"
  _write(
    path,
    state,
    format="poolnet-jax",
    variant="resnet50",
    overrides=json.dumps({"width": 0.125, "stages": [1, 1, 1, 1]}),
  )
  with pytest.raises(mapping.CheckpointMismatch) as error:
    poolnet_jax.load_pretrained(path)
  message = str(error.value)
  assert message.startswith(
    f"{path} does not hold the PoolNet its metadata names, resnet50 "
    f"(width=0.125, stages=(1, 1, 1, 1)):"
  )
  assert "1 missing tensors: score.score.bias" in message
  assert "1 unexpected tensors: extra.weight" in message
  assert "base.resnet.conv1.weight: file (8, 3, 3, 3), model (8, 3, 7, 7)" in message


def test_file_without_metadata_or_poolnet_names(tmp_path):
  path = tmp_path / "other.safetensors"
  _write(path, {"encoder.weight": np.zeros((4, 4), np.float32)}, format="pt")
  with pytest.raises(mapping.CheckpointMismatch) as error:
    poolnet_jax.load_pretrained(path)
  message = str(error.value)
  assert message.startswith(f"{path} is not a PoolNet checkpoint of any known variant")
  assert "1 unexpected tensors: encoder.weight" in message
  assert f"({path} has no poolnet-jax metadata in its header" in message


@pytest.mark.parametrize(
  "metadata, problem",
  [
    (dict(format="poolnet-jax"), "its poolnet-jax metadata names no model"),
    (
      dict(format="poolnet-jax", variant="resnet50", overrides="width=0.5"),
      "its poolnet-jax metadata is not a PoolNet model spec (Expecting value",
    ),
    (
      dict(format="poolnet-jax", variant="resnet101"),
      "its poolnet-jax metadata is not a PoolNet model spec (variant='resnet101' is not one of",
    ),
    (
      dict(format="poolnet-jax", variant="resnet50", overrides='{"depth": 3}'),
      "its poolnet-jax metadata is not a PoolNet model spec (depth: not a model option",
    ),
    (
      dict(format="poolnet-jax", model='{"variant": "resnet50", "width": -1}'),
      "its poolnet-jax metadata is not a PoolNet model spec (width=-1 must be a number > 0",
    ),
  ],
  ids=["no-variant", "bad-overrides", "unknown-variant", "unknown-override", "bad-width"],
)
def test_bad_metadata_names_the_file_and_the_problem(tiny_variables, tmp_path, metadata, problem):
  path = tmp_path / "model.safetensors"
  _write(path, mapping.to_state_dict(tiny_variables), **metadata)
  with pytest.raises(mapping.CheckpointMismatch) as error:
    poolnet_jax.load_pretrained(tmp_path)  # the folder: its model.safetensors
  assert str(error.value).startswith(f"{path}: {problem}")


def test_unreadable_files_name_the_file(tmp_path):
  bad = tmp_path / "bad.safetensors"
  bad.write_bytes(b"not a safetensors file")
  with pytest.raises(
    safetensors_io.SafetensorsError, match=rf"^{bad}: not a readable safetensors file"
  ):
    poolnet_jax.load_pretrained(bad)
  with pytest.raises(FileNotFoundError, match="no such file or folder"):
    poolnet_jax.load_pretrained(tmp_path / "missing.safetensors")


def test_renamed_safetensors_file_is_recognised_by_its_header(tiny_variables, tmp_path):
  path = tmp_path / "weights.bin"
  pretrained.save_safetensors(path, "resnet50", tiny_variables, **TINY)
  assert safetensors_io.looks_like_safetensors(path)
  model, _ = poolnet_jax.load_pretrained(path)
  assert model.width == 0.125


def _umask():
  mask = os.umask(0)
  os.umask(mask)
  return mask
