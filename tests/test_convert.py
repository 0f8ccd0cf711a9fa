"""The converter: formats, strict mapping, export, command line, backbone files."""

import json
import subprocess
import sys
from collections import OrderedDict
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import poolnet_jax
from reference import torch_poolnet
from poolnet_jax.cli import convert
from poolnet_jax.weights import pretrained
from poolnet_jax.weights.torch_io import backbones, mapping
from random_weights import TINY, random_variables
from poolnet_jax.weights.torch_io.pth import read_state_dict

REFERENCE = Path(__file__).resolve().parents[1] / "reference"  # the state_dict contracts
FILES = {
  "resnet50": "resnet",
  "vgg16": "vgg",
  "resnet50_edge": "resnet_edge",
  "vgg16_edge": "vgg_edge",
}
REPO = Path(__file__).resolve().parents[1]


def _reference_rows(name):
  rows = []
  for line in (REFERENCE / f"state_dict_{FILES[name]}.txt").read_text().splitlines():
    key, shape, dtype = line.split("\t")
    rows.append((key, tuple(eval(shape)), dtype))  # pylint: disable=eval-used
  return rows


@pytest.fixture(scope="module")
def vgg_state_dict():
  model = torch_poolnet.build("vgg16_edge")
  torch_poolnet.randomize_(model, seed=5)
  return model.state_dict()


@pytest.mark.parametrize("name", sorted(FILES))
def test_expected_names_order_and_shapes_equal_the_reference(name):
  expected = mapping.expected_state_dict(name)
  assert [(k, shape, dtype) for k, (shape, dtype) in expected.items()] == _reference_rows(name)


def _assert_same(a, b):
  assert list(a) == list(b)
  for key in a:
    np.testing.assert_array_equal(np.asarray(a[key]), np.asarray(b[key]), err_msg=key)


@pytest.mark.parametrize("legacy", [True, False])
@pytest.mark.parametrize("prefix", ["", "module."])
def test_formats_and_dataparallel_prefix_give_the_same_variables(
  vgg_state_dict, tmp_path, legacy, prefix
):
  path = tmp_path / "model.pth"
  state = OrderedDict((prefix + k, v) for k, v in vgg_state_dict.items())
  torch.save(state, path, _use_new_zipfile_serialization=not legacy)
  model, variables = poolnet_jax.load_torch_checkpoint(path)
  assert (model.backbone, model.edge) == ("vgg16", True)
  kernel = variables["params"]["base"]["vgg16"]["base"]["0"]["kernel"]
  np.testing.assert_array_equal(
    kernel, vgg_state_dict["base.vgg16.base.0.weight"].numpy().transpose(2, 3, 1, 0)
  )
  _assert_same(mapping.to_state_dict(variables), {k: v.numpy() for k, v in vgg_state_dict.items()})


def test_round_trip_file_flax_file_is_bit_exact_and_loads_in_torch(tmp_path):
  model = torch_poolnet.build("resnet50_edge")
  torch_poolnet.randomize_(model, seed=1)
  src, dst = tmp_path / "src.pth", tmp_path / "dst.pth"
  torch.save(model.state_dict(), src, _use_new_zipfile_serialization=False)
  flax_model, variables = poolnet_jax.load_torch_checkpoint(src)
  poolnet_jax.save_torch_checkpoint(dst, "resnet50_edge", variables)
  _assert_same(read_state_dict(dst), read_state_dict(src))
  loaded = torch.load(dst)
  _assert_same(
    {k: v.numpy() for k, v in loaded.items()}, {k: v.numpy() for k, v in model.state_dict().items()}
  )
  assert loaded["base.resnet.bn1.num_batches_tracked"].dtype == torch.int64
  fresh = torch_poolnet.build("resnet50_edge")
  fresh.load_state_dict(loaded, strict=True)
  del flax_model


def test_half_precision_files_are_cast_to_float32(vgg_state_dict, tmp_path):
  path = tmp_path / "half.pth"
  torch.save(OrderedDict((k, v.half()) for k, v in vgg_state_dict.items()), path)
  _, variables = poolnet_jax.load_torch_checkpoint(path)
  leaves = jax.tree_util.tree_leaves(variables["params"])
  assert {leaf.dtype for leaf in leaves} == {np.dtype(np.float32)}


def test_wrong_variant_lists_what_differs(vgg_state_dict, tmp_path):
  path = tmp_path / "vgg_edge.pth"
  torch.save(vgg_state_dict, path)
  with pytest.raises(mapping.CheckpointMismatch) as error:
    poolnet_jax.load_torch_checkpoint(path, name="vgg16")
  message = str(error.value)
  assert "vgg_edge.pth" in message and "most resembles vgg16_edge" in message
  assert "33 unexpected tensors: block.0.block_in1.0.weight" in message


def test_damaged_checkpoint_names_nearest_variant_and_problems(vgg_state_dict, tmp_path):
  state = OrderedDict(vgg_state_dict)
  del state["score.score.bias"]
  state["extra.weight"] = torch.zeros(3)
  state["deep_pool.0.conv_sum.weight"] = torch.zeros(1, 1, 3, 3)
  path = tmp_path / "damaged.pth"
  torch.save(state, path)
  with pytest.raises(mapping.CheckpointMismatch) as error:
    poolnet_jax.load_torch_checkpoint(path)
  message = str(error.value)
  assert "damaged.pth" in message and "most resembles vgg16_edge" in message
  assert "1 missing tensors: score.score.bias" in message
  assert "1 unexpected tensors: extra.weight" in message
  assert "deep_pool.0.conv_sum.weight: file (1, 1, 3, 3), model (512, 512, 3, 3)" in message


def test_convert_command_and_load_pretrained(vgg_state_dict, tmp_path):
  src = tmp_path / "final.pth"
  torch.save(vgg_state_dict, src, _use_new_zipfile_serialization=False)
  result = subprocess.run(
    [sys.executable, "-m", "poolnet_jax.cli.convert", str(src), str(tmp_path / "out")],
    capture_output=True,
    text=True,
    cwd=REPO,
    check=False,
  )
  assert result.returncode == 0, result.stderr
  assert "vgg16_edge" in result.stdout and "53,631,352 parameters" in result.stdout
  model, variables = poolnet_jax.load_pretrained(tmp_path / "out")
  _assert_same(mapping.to_state_dict(variables), {k: v.numpy() for k, v in vgg_state_dict.items()})
  assert (model.backbone, model.edge) == ("vgg16", True)


def test_convert_command_reports_a_bad_file(tmp_path):
  bad = tmp_path / "bad.pth"
  bad.write_bytes(b"not a checkpoint at all")
  result = subprocess.run(
    [sys.executable, "-m", "poolnet_jax.cli.convert", str(bad), str(tmp_path / "out")],
    capture_output=True,
    text=True,
    cwd=REPO,
    check=False,
  )
  assert result.returncode == 2
  assert result.stderr.startswith("error: ") and "bad.pth" in result.stderr
  assert "Traceback" not in result.stderr


def _resnet_backbone_state():
  full = torch_poolnet.build("resnet50")
  torch_poolnet.randomize_(full, seed=3)
  state = OrderedDict(
    (k[len("base.resnet.") :], v)
    for k, v in full.state_dict().items()
    if k.startswith("base.resnet.")
  )
  state["fc.weight"] = torch.zeros(1000, 2048)
  state["fc.bias"] = torch.zeros(1000)
  return state


def test_resnet_backbone_file_initialises_the_backbone(tmp_path):
  state = _resnet_backbone_state()
  path = tmp_path / "resnet50_caffe.pth"
  torch.save(state, path, _use_new_zipfile_serialization=False)
  fragment, ignored = backbones.load_backbone(path, "resnet50")
  assert ignored == ["fc.weight", "fc.bias"]
  model = poolnet_jax.create_model("resnet50")
  variables = jax.eval_shape(model.init, jax.random.PRNGKey(0), jnp.zeros((1, 128, 128, 3)))
  variables = jax.tree_util.tree_map(lambda s: np.zeros(s.shape, s.dtype), variables)
  merged = backbones.merge_backbone(variables, fragment)
  exported = mapping.to_state_dict(merged)
  for key, value in state.items():
    if not key.startswith("fc."):
      np.testing.assert_array_equal(exported["base.resnet." + key], value.numpy(), err_msg=key)
  assert not exported["base.ppms_pre.weight"].any()  # the decoder is left alone


@pytest.mark.parametrize("layout", ["flat", "torchvision"])
def test_vgg_backbone_files(vgg_state_dict, tmp_path, layout):
  prefix = "" if layout == "flat" else "features."
  state = OrderedDict(
    (prefix + k[len("base.vgg16.base.") :], v)
    for k, v in vgg_state_dict.items()
    if k.startswith("base.vgg16.base.")
  )
  state[prefix + "31.weight"] = torch.zeros(1024, 512, 3, 3)  # fc6 as a conv: not in PoolNet
  if layout == "torchvision":
    state["classifier.0.weight"] = torch.zeros(4, 25088)
  path = tmp_path / "vgg.pth"
  torch.save(state, path)
  fragment, ignored = backbones.load_backbone(path, "vgg16")
  assert prefix + "31.weight" in ignored
  np.testing.assert_array_equal(
    fragment["params"]["base"]["vgg16"]["base"]["28"]["kernel"],
    vgg_state_dict["base.vgg16.base.28.weight"].numpy().transpose(2, 3, 1, 0),
  )


def test_backbone_file_of_the_wrong_kind_is_refused(tmp_path):
  path = tmp_path / "resnet.pth"
  torch.save(_resnet_backbone_state(), path)
  with pytest.raises(mapping.CheckpointMismatch, match="resnet.pth is not a vgg16 backbone"):
    backbones.load_backbone(path, "vgg16")


# The destination: nothing that is not a converted model is ever deleted.


def _tree(root):
  return {
    p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
  }


@pytest.fixture(scope="module")
def tiny_variables():
  return random_variables(poolnet_jax.create_model("resnet50", **TINY))


def test_convert_refuses_a_folder_that_is_not_a_converted_model(tmp_path, capsys):
  dst = tmp_path / "dir"
  (dst / "variables").mkdir(parents=True)
  (dst / "variables/my_notes.txt").write_text("keep me")
  (dst / "photo.jpg").write_bytes(b"mine")
  before = _tree(dst)
  for extra in ([], ["--overwrite"]):
    # Refused before the source is even read (it does not exist here).
    assert convert.main(["convert", str(tmp_path / "final.pth"), str(dst), *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {dst} is not empty (photo.jpg, variables)")
    assert "not a converted model" in err and "Traceback" not in err
    assert _tree(dst) == before
  (tmp_path / "file").write_text("x")
  assert convert.main(["convert", str(tmp_path / "final.pth"), str(tmp_path / "file")]) == 2
  assert "is a file" in capsys.readouterr().err
  assert convert.main(["convert", str(tmp_path / "final.pth"), str(tmp_path / "new")]) == 2
  assert f"{tmp_path / 'final.pth'}: No such file" in capsys.readouterr().err
  assert not (tmp_path / "new").exists()
  assert convert.main(["convert", str(tmp_path / "final.pth")]) == 2
  assert "usage:" in capsys.readouterr().err


def test_save_pretrained_overwrites_only_a_converted_model(tmp_path, tiny_variables):
  dst = tmp_path / "model"
  poolnet_jax.save_pretrained(dst, "resnet50", tiny_variables, **TINY)
  (dst / "best.json").write_text('{"MAE": 0.1}')  # what training keeps beside its best model
  with pytest.raises(FileExistsError, match="already holds a converted model.*--overwrite"):
    poolnet_jax.save_pretrained(dst, "resnet50", tiny_variables, **TINY)
  changed = jax.tree_util.tree_map(lambda x: x + 1 if x.dtype == np.float32 else x, tiny_variables)
  poolnet_jax.save_pretrained(dst, "resnet50", changed, overwrite=True, **TINY)
  assert (dst / "best.json").read_text() == '{"MAE": 0.1}'
  _, loaded = poolnet_jax.load_pretrained(dst)
  kernel = lambda v: v["params"]["base"]["resnet"]["conv1"]["kernel"]
  np.testing.assert_array_equal(kernel(loaded), kernel(changed))
  # Refused even with overwrite: a non-empty folder of something else.
  other = tmp_path / "other"
  other.mkdir()
  (other / "a.txt").write_text("x")
  with pytest.raises(FileExistsError, match="not a converted model"):
    poolnet_jax.save_pretrained(other, "resnet50", tiny_variables, overwrite=True, **TINY)
  assert _tree(other) == {"a.txt": b"x"}
  # The leftovers of a save that was stopped do not block the next one.
  stopped = tmp_path / "stopped"
  (stopped / "variables.orbax-checkpoint-tmp-1234").mkdir(parents=True)
  pretrained.check_save_target(stopped)


def test_poolnet_json_holds_the_model_spec_and_an_older_one_still_loads(tmp_path, tiny_variables):
  dst = tmp_path / "model"
  poolnet_jax.save_pretrained(dst, "resnet50", tiny_variables, **TINY)
  assert json.loads((dst / "poolnet.json").read_text()) == {
    "model": {
      "variant": "resnet50",
      "width": 0.125,
      "stages": [1, 1, 1, 1],
      "resnet_style": "caffe",
      "dtype": "float32",
    }
  }
  # What save_pretrained wrote until 2026-12-07: the variant and its create_model overrides.
  (dst / "poolnet.json").write_text(
    '{"variant": "resnet50", "overrides": {"width": 0.125, "stages": [1, 1, 1, 1]}}'
  )
  model, variables = poolnet_jax.load_pretrained(dst)
  assert (model.backbone, model.width, tuple(model.stages)) == ("resnet50", 0.125, (1, 1, 1, 1))
  kernel = lambda v: np.asarray(v["params"]["base"]["resnet"]["conv1"]["kernel"])
  np.testing.assert_array_equal(kernel(variables), kernel(tiny_variables))
  (dst / "poolnet.json").write_text('{"model": {"variant": "resnet50", "width": 0}}')
  with pytest.raises(
    mapping.CheckpointMismatch,
    match=r"poolnet.json: not a PoolNet model description \(width=0 must",
  ):
    poolnet_jax.load_pretrained(dst)


def test_convert_overwrite_replaces_a_converted_model(
  vgg_state_dict, tmp_path, tiny_variables, capsys
):
  src = tmp_path / "final.pth"
  torch.save(vgg_state_dict, src)
  dst = tmp_path / "converted"
  poolnet_jax.save_pretrained(dst, "resnet50", tiny_variables, **TINY)
  (dst / "README.txt").write_text("mine")
  assert convert.main(["convert", str(src), str(dst)]) == 2
  assert "--overwrite" in capsys.readouterr().err
  assert convert.main(["convert", str(src), str(dst), "--overwrite"]) == 0
  assert "vgg16_edge" in capsys.readouterr().out
  assert (dst / "README.txt").read_text() == "mine"
  model, variables = poolnet_jax.load_pretrained(dst)
  assert (model.backbone, model.edge, model.width) == ("vgg16", True, 1.0)
  _assert_same(mapping.to_state_dict(variables), {k: v.numpy() for k, v in vgg_state_dict.items()})


def test_convert_refuses_an_unknown_format_before_reading(tmp_path, capsys):
  assert (
    convert.main(
      ["convert", str(tmp_path / "final.pth"), str(tmp_path / "out"), "--format", "onnx"]
    )
    == 2
  )
  err = capsys.readouterr().err
  assert err == "error: flag --format=onnx: value should be one of <orbax|safetensors|both>\n"
  assert not (tmp_path / "out").exists()
