"""The Flax PoolNet: sizes, parameter counts, gradients, errors (values: test_parity.py)."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import poolnet_jax
from poolnet_jax.models.resnet import ResNet
from poolnet_jax.models.vgg import VGG16
from random_weights import random_variables

VARIANTS = ("resnet50", "vgg16", "resnet50_edge", "vgg16_edge")
# Trainable-shaped parameter counts of the original PyTorch models.
PARAM_COUNTS = {
  "resnet50": 68_261_057,
  "vgg16": 52_512_705,
  "resnet50_edge": 69_557_642,
  "vgg16_edge": 53_631_352,
}
# Backbone feature sizes of the original PyTorch models at these input sizes.
RESNET_SIZES = {
  (300, 400): [(150, 200), (76, 101), (38, 51), (19, 26), (19, 26)],
  (301, 397): [(151, 199), (76, 100), (38, 50), (19, 25), (19, 25)],
  (320, 320): [(160, 160), (81, 81), (41, 41), (21, 21), (21, 21)],
  (128, 128): [(64, 64), (33, 33), (17, 17), (9, 9), (9, 9)],
}
VGG_SIZES = {
  (300, 400): [(150, 200), (75, 100), (38, 50), (19, 25)],
  (301, 397): [(151, 199), (76, 100), (38, 50), (19, 25)],
  (320, 320): [(160, 160), (80, 80), (40, 40), (20, 20)],
  (128, 128): [(64, 64), (32, 32), (16, 16), (8, 8)],
}


@pytest.mark.parametrize("name", VARIANTS)
def test_parameter_counts_equal_the_original(name):
  model = poolnet_jax.create_model(name)
  variables = jax.eval_shape(model.init, jax.random.PRNGKey(0), jnp.zeros((1, 128, 128, 3)))
  params = jax.tree_util.tree_leaves(variables["params"])
  assert sum(int(np.prod(p.shape)) for p in params) == PARAM_COUNTS[name]
  # VGG-16 has no BatchNorm, so no batch_stats.
  assert set(variables) == ({"params", "batch_stats"} if "resnet" in name else {"params"})


@pytest.mark.parametrize("size", sorted(RESNET_SIZES))
def test_resnet_feature_sizes(size):
  backbone = ResNet()
  x = jnp.zeros((1, *size, 3))
  variables = jax.eval_shape(backbone.init, jax.random.PRNGKey(0), x)
  features = jax.eval_shape(backbone.apply, variables, x)
  assert [f.shape[1:3] for f in features] == RESNET_SIZES[size]
  assert [f.shape[-1] for f in features] == [64, 256, 512, 1024, 2048]
  assert (
    list(zip(ResNet.feature_sizes(size[0]), ResNet.feature_sizes(size[1]))) == RESNET_SIZES[size]
  )


@pytest.mark.parametrize("size", sorted(VGG_SIZES))
def test_vgg_feature_sizes(size):
  backbone = VGG16()
  x = jnp.zeros((1, *size, 3))
  variables = jax.eval_shape(backbone.init, jax.random.PRNGKey(0), x)
  features = jax.eval_shape(backbone.apply, variables, x)
  assert [f.shape[1:3] for f in features] == VGG_SIZES[size]
  assert [f.shape[-1] for f in features] == [128, 256, 512, 512]


def test_torchvision_style_moves_the_stride_to_the_3x3():
  backbone = ResNet(style="torchvision")
  variables = jax.eval_shape(backbone.init, jax.random.PRNGKey(0), jnp.zeros((1, 300, 400, 3)))
  layer2 = variables["params"]["layer2"]["0"]
  assert layer2["conv2"]["kernel"].shape == (3, 3, 128, 128)
  features = jax.eval_shape(backbone.apply, variables, jnp.zeros((1, 300, 400, 3)))
  # Floor-mode max pool: 150 -> 75 (ceil mode gives 76).
  assert [f.shape[1:3] for f in features] == [(150, 200), (75, 100), (38, 50), (19, 25), (19, 25)]


@pytest.mark.parametrize("name", VARIANTS)
@pytest.mark.parametrize("size", [(301, 397), (128, 160), (113, 127)])
def test_output_shapes_at_odd_sizes(name, size):
  model = poolnet_jax.create_model(name)
  x = jnp.zeros((2, *size, 3))
  variables = jax.eval_shape(model.init, jax.random.PRNGKey(0), x)
  assert jax.eval_shape(model.apply, variables, x).shape == (2, *size, 1)
  if name.endswith("_edge"):
    fused, sides = jax.eval_shape(lambda v, x: model.apply(v, x, mode="edge"), variables, x)
    assert fused.shape == (2, *size, 1)
    assert [s.shape for s in sides] == [(2, *size, 1)] * (4 if "resnet" in name else 3)


@pytest.mark.parametrize("name", VARIANTS)
def test_too_small_input_names_the_minimum(name):
  model = poolnet_jax.create_model(name)
  smallest = model.min_input_size()
  x = jnp.zeros((1, smallest, smallest, 3))
  variables = jax.eval_shape(model.init, jax.random.PRNGKey(0), x)
  with pytest.raises(ValueError, match=f"smallest accepted height and width is {smallest}"):
    jax.eval_shape(model.apply, variables, jnp.zeros((1, smallest - 1, smallest + 20, 3)))


def test_minimum_sizes_follow_the_architecture():
  # The original fails at 100x100 and runs at 128x128: the
  # coarsest map must hold the FAM's 8x8 pool.
  assert poolnet_jax.create_model("resnet50").min_input_size() == 111
  assert ResNet.feature_sizes(111)[-1] == 8 and ResNet.feature_sizes(110)[-1] == 7
  assert poolnet_jax.create_model("vgg16").min_input_size() == 113
  assert VGG16.feature_sizes(113)[-1] == 8 and VGG16.feature_sizes(112)[-1] == 7


def _tiny(name):
  return poolnet_jax.create_model(name, width=0.125, stages=(1, 1, 1, 1))


@pytest.mark.parametrize("name", ["resnet50", "vgg16"])
def test_gradients_reach_every_parameter(name):
  model = _tiny(name)
  x = jax.random.normal(jax.random.PRNGKey(3), (1, 128, 144, 3)) * 50
  variables = random_variables(model)
  grads = jax.jit(jax.grad(lambda p: jnp.sum(model.apply({**variables, "params": p}, x) ** 2)))(
    variables["params"]
  )
  for path, g in jax.tree_util.tree_leaves_with_path(grads):
    assert float(np.abs(np.asarray(g)).max()) > 0, jax.tree_util.keystr(path)


@pytest.mark.parametrize("name", ["resnet50_edge", "vgg16_edge"])
def test_saliency_loss_does_not_train_the_edge_branch(name):
  model = _tiny(name)
  x = jax.random.normal(jax.random.PRNGKey(3), (1, 128, 144, 3)) * 50
  variables = random_variables(model)

  def grads(params, mode):
    def loss(p):
      out = model.apply({**variables, "params": p}, x, mode=mode)
      return sum(jnp.sum(o**2) for o in jax.tree_util.tree_leaves(out))

    return jax.grad(loss)(params)

  # Both modes in one compiled function: one compilation instead of two.
  saliency, edge = jax.jit(lambda p: (grads(p, "saliency"), grads(p, "edge")))(variables["params"])
  for group in ("block", "fuse"):
    assert all(
      float(np.abs(np.asarray(g)).max()) == 0 for g in jax.tree_util.tree_leaves(saliency[group])
    )
  assert all(
    float(np.abs(np.asarray(g)).max()) > 0 for g in jax.tree_util.tree_leaves(edge["block"])
  )
  for group in ("edgeinfo", "score", "deep_pool", "base"):
    assert all(
      float(np.abs(np.asarray(g)).max()) > 0 for g in jax.tree_util.tree_leaves(saliency[group])
    )


def test_bfloat16_compute_keeps_float32_parameters():
  model = poolnet_jax.create_model("vgg16", width=0.125, dtype=jnp.bfloat16)
  x = jnp.zeros((1, 128, 128, 3))
  variables = jax.eval_shape(model.init, jax.random.PRNGKey(0), x)
  assert {l.dtype for l in jax.tree_util.tree_leaves(variables["params"])} == {np.dtype(np.float32)}
  assert jax.eval_shape(model.apply, variables, x).dtype == jnp.float32


def test_unknown_variant_is_named():
  with pytest.raises(ValueError, match="resnet101"):
    poolnet_jax.create_model("resnet101")


def test_model_spec_is_one_value_that_makes_the_model_and_round_trips_through_json():
  from poolnet_jax.models import ModelSpec  # pylint: disable=import-outside-toplevel

  spec = ModelSpec("vgg16_edge", width=0.5, dtype="bfloat16")
  assert spec == ModelSpec.create("vgg16_edge", width=0.5, dtype=jnp.bfloat16)
  assert hash(spec) == hash(ModelSpec("vgg16_edge", width=0.5, dtype="bfloat16"))
  assert spec.options() == {"width": 0.5, "dtype": "bfloat16"} and str(spec) == (
    "vgg16_edge (width=0.5, dtype=bfloat16)"
  )
  assert ModelSpec.from_json(json.loads(json.dumps(spec.to_json()))) == spec
  model = poolnet_jax.create_model(spec)
  assert (model.backbone, model.edge, model.width, model.dtype) == (
    "vgg16",
    True,
    0.5,
    jnp.bfloat16,
  )
  assert ModelSpec.of(model) == spec
  old = {"variant": "resnet50", "overrides": {"stages": [2, 2, 2, 2]}}  # files of before the spec
  assert ModelSpec.from_json(old) == ModelSpec("resnet50", stages=(2, 2, 2, 2))
  for bad, message in [
    (dict(variant="resnet18"), "variant='resnet18' is not one of resnet50, resnet50_edge, vgg16,"),
    (dict(width=0), "width=0 must be a number > 0"),
    (dict(stages=(3, 4, 6)), r"stages=\(3, 4, 6\) must be 4 block counts"),
    (dict(resnet_style="timm"), "resnet_style='timm' is not one of caffe, torchvision"),
    (dict(dtype="float64"), "dtype='float64' is not one of float32, bfloat16, float16"),
    (dict(width=True, dtype="x"), "width=True must be a number > 0; dtype='x' is not one of"),
  ]:
    with pytest.raises(ValueError, match=message):
      ModelSpec(**bad)
  with pytest.raises(ValueError, match="depth: not a model option"):
    ModelSpec.from_json({"variant": "resnet50", "depth": 3})
