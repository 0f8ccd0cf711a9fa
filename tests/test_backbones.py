"""ImageNet backbone files with and without BatchNorm counters, and files given to the wrong key.

The files are written by torch (the legacy format of PyTorch <= 1.5, as the
authors' `resnet50_caffe.pth`, and the zip format); the tensors loaded are
compared with what torch wrote.
"""

import sys
from collections import OrderedDict
from pathlib import Path

import flax
import jax
import numpy as np
import pytest
import torch

import poolnet_jax
from poolnet_jax.train import recipe
from poolnet_jax.weights.torch_io import backbones, mapping, names, pth_writer

ROOT = Path(__file__).resolve().parents[1]
TINY = dict(width=0.125, stages=(1, 1, 1, 1))


@pytest.fixture(scope="module")
def tiny_state_dict():
  """A tiny ResNet-50 PoolNet's state_dict (random values), as torch tensors."""
  model = poolnet_jax.create_model("resnet50", **TINY)
  variables = jax.jit(model.init)(jax.random.PRNGKey(3), np.zeros((1, 128, 128, 3), np.float32))
  rng = np.random.default_rng(0)
  state = mapping.to_state_dict(variables)
  return OrderedDict(
    (
      k,
      torch.from_numpy(v if v.dtype.kind in "iu" else rng.normal(size=v.shape).astype(np.float32)),
    )
    for k, v in state.items()
  )


def backbone_file(tiny_state_dict, path, counters=True, legacy=True):
  """The ResNet part of `tiny_state_dict` as an ImageNet backbone file (fc head included)."""
  prefix = backbones.PREFIX["resnet50"]
  state = OrderedDict(
    (k[len(prefix) :], v)
    for k, v in tiny_state_dict.items()
    if k.startswith(prefix) and (counters or "num_batches_tracked" not in k)
  )
  state["fc.weight"], state["fc.bias"] = torch.zeros(10, 8), torch.zeros(10)
  torch.save(state, path, _use_new_zipfile_serialization=not legacy)
  return state


def tiny_config(**changes):
  sys.path.insert(0, str(ROOT))
  from poolnet_jax.configs import tiny  # pylint: disable=import-outside-toplevel

  config = tiny.get_config()
  for key, value in changes.items():
    config[key] = value
  return config


@pytest.mark.parametrize("counters", [True, False], ids=["with_counters", "pre_0.4.1"])
def test_backbone_file_initialises_training(tiny_state_dict, tmp_path, counters):
  path = tmp_path / "resnet50_caffe.pth"
  state = backbone_file(tiny_state_dict, path, counters=counters)
  assert any("num_batches_tracked" in k for k in state) == counters
  config = tiny_config(backbone_checkpoint=str(path))
  model = recipe.create_model_from_config(config)
  variables = recipe.initial_variables(config, model, jax.random.PRNGKey(0))
  flat = flax.traverse_util.flatten_dict(variables, sep="/")
  for key, tensor in state.items():
    if key.startswith("fc."):
      continue
    expected = tensor.numpy()
    expected = expected.transpose(2, 3, 1, 0) if expected.ndim == 4 else expected
    path_ = "/".join(names.torch_to_flax("base.resnet." + key, expected.ndim))
    np.testing.assert_array_equal(flat[path_], expected, err_msg=key)
  counters_loaded = [v for k, v in flat.items() if k.endswith("num_batches_tracked")]
  assert counters_loaded and all(int(v) == 0 for v in counters_loaded)


def test_full_poolnet_file_given_as_backbone_names_init_checkpoint(tiny_state_dict, tmp_path):
  path = tmp_path / "final.pth"
  pth_writer.write_state_dict(path, {k: v.numpy() for k, v in tiny_state_dict.items()})
  with pytest.raises(
    mapping.CheckpointMismatch,
    match=rf"final.pth is a full PoolNet checkpoint \(resnet50\), not an "
    rf"ImageNet backbone; use --config.init_checkpoint={path}",
  ):
    backbones.load_backbone(path, "resnet50", **TINY)


def test_converted_folder_given_as_backbone_names_init_checkpoint(tmp_path):
  (tmp_path / "poolnet.json").write_text("{}")
  with pytest.raises(mapping.CheckpointMismatch, match="use --config.init_checkpoint="):
    backbones.load_backbone(tmp_path, "resnet50")


@pytest.mark.parametrize("legacy", [True, False], ids=["legacy", "zip"])
def test_backbone_file_given_as_init_checkpoint_names_backbone_checkpoint(
  tiny_state_dict, tmp_path, legacy
):
  path = tmp_path / "resnet50_caffe.pth"
  backbone_file(tiny_state_dict, path, counters=False, legacy=legacy)
  config = tiny_config(init_checkpoint=str(path))
  model = recipe.create_model_from_config(config)
  with pytest.raises(
    mapping.CheckpointMismatch,
    match=r"resnet50_caffe.pth is an ImageNet backbone \(resnet50\), not a full "
    rf"PoolNet checkpoint; to train from it use "
    rf"--config.backbone_checkpoint={path}",
  ):
    recipe.initial_variables(config, model, jax.random.PRNGKey(0))


def test_vgg_backbone_file_given_to_the_converter_says_what_it_is(tmp_path):
  path = tmp_path / "vgg16_20M.pth"
  torch.save(
    OrderedDict(
      [
        ("0.weight", torch.zeros(64, 3, 3, 3)),
        ("0.bias", torch.zeros(64)),
        ("2.weight", torch.zeros(64, 64, 3, 3)),
        ("2.bias", torch.zeros(64)),
      ]
    ),
    path,
  )
  with pytest.raises(mapping.CheckpointMismatch, match=r"is an ImageNet backbone \(vgg16\)"):
    poolnet_jax.load_pretrained(path)
