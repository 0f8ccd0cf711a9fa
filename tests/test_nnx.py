"""poolnet_jax.weights.nnx_bridge: PoolNet as an nnx.Module, equal to the Linen apply; the snippet of docs/export.md."""

import re
from pathlib import Path

import flax
from flax import nnx
import jax
import numpy as np
import pytest

import poolnet_jax
from poolnet_jax.weights import nnx_bridge
from random_weights import TINY, random_variables

PAGE = Path(__file__).resolve().parents[1] / "docs" / "export.md"


def _images(size=(120, 136), batch=2, seed=0):
  rng = np.random.default_rng(seed)
  return rng.normal(0.0, 50.0, (batch, *size, 3)).astype(np.float32)


def _flat(tree):
  flat = flax.traverse_util.flatten_dict(jax.device_get(tree))
  return {k: np.asarray(v) for k, v in flat.items()}


@nnx.jit(static_argnames="mode")
def _call(module, x, mode="saliency"):
  return module(x, mode=mode)


@pytest.mark.parametrize("name", ["resnet50", pytest.param("vgg16_edge", marks=pytest.mark.slow)])
def test_outputs_equal_the_linen_apply(name):
  model = poolnet_jax.create_model(name, conv="xla", **TINY)  # XLA's convolutions compile faster
  variables = random_variables(model, seed=3)
  module = poolnet_jax.to_nnx(model, variables)
  assert isinstance(module, nnx.Module)
  apply = jax.jit(model.apply, static_argnames="mode")
  x = _images()
  np.testing.assert_array_equal(np.asarray(_call(module, x)), np.asarray(apply(variables, x)))
  if model.edge:
    (fused, sides), (want_fused, want_sides) = (
      _call(module, x, "edge"),
      apply(variables, x, mode="edge"),
    )
    np.testing.assert_array_equal(np.asarray(fused), np.asarray(want_fused))
    assert len(sides) == len(want_sides) > 1
    for side, want in zip(sides, want_sides):
      np.testing.assert_array_equal(np.asarray(side), np.asarray(want))


def test_weights_are_the_given_ones_and_come_back():
  model = poolnet_jax.create_model("resnet50", **TINY)
  variables = random_variables(model, seed=4)
  module = nnx_bridge.to_nnx(model, variables)
  params, stats = (
    {path: np.asarray(v.get_value()) for path, v in nnx.to_flat_state(nnx.state(module, kind))}
    for kind in (nnx.Param, nnx.BatchStat)
  )
  given = _flat(variables)
  assert {("params", *map(str, p)) for p in params} | {
    ("batch_stats", *map(str, p)) for p in stats
  } == set(given)
  for path, value in params.items():
    np.testing.assert_array_equal(value, given[("params", *map(str, path))])
  assert nnx.state(module, nnx.RngState) == nnx.State({})  # no random streams kept
  back_model, back = nnx_bridge.to_linen(module)
  assert back_model is model
  assert {k: v.tobytes() for k, v in _flat(back).items()} == {
    k: v.tobytes() for k, v in given.items()
  }


def test_load_nnx_reads_a_converted_directory(tmp_path):
  model = poolnet_jax.create_model("resnet50", **TINY)
  variables = random_variables(model, seed=5)
  poolnet_jax.save_pretrained(tmp_path / "converted", "resnet50", variables, **TINY)
  module = poolnet_jax.load_nnx(tmp_path / "converted")
  assert module.to_nnx__module == model
  params = nnx.to_flat_state(nnx.state(module, nnx.Param))
  assert all(
    np.array_equal(v.get_value(), variables["params"][p[0]][p[1]][p[2]][p[3]][p[4]])
    for p, v in params
    if len(p) == 5 and p[-1] == "kernel"
  )


@pytest.mark.slow
def test_create_nnx_initialises_like_linen_init():
  module = poolnet_jax.create_nnx("resnet50", seed=7, **TINY)
  model = poolnet_jax.create_model("resnet50", **TINY)
  size = model.min_input_size()
  want = _flat(jax.jit(model.init)(jax.random.PRNGKey(7), np.zeros((1, size, size, 3))))
  assert {k: v.tobytes() for k, v in _flat(nnx_bridge.to_linen(module)[1]).items()} == {
    k: v.tobytes() for k, v in want.items()
  }


def test_unknown_variant_and_misfit_variables_are_clear_errors():
  with pytest.raises(
    ValueError,
    match="variant='resnet101' is not one of resnet50, resnet50_edge, vgg16, vgg16_edge",
  ):
    poolnet_jax.create_nnx("resnet101")
  small = poolnet_jax.create_model("vgg16", **TINY)
  variables = random_variables(small)
  del variables["params"]["score"]
  with pytest.raises(
    nnx_bridge.VariablesMismatch,
    match=r"do not fit PoolNet vgg16 \(width 0.125\):\n  2 missing: "
    r"params/score/score/bias, params/score/score/kernel",
  ):
    poolnet_jax.to_nnx(small, variables)
  with pytest.raises(nnx_bridge.VariablesMismatch, match=r"wrong shape: params/base/"):
    poolnet_jax.create_nnx("vgg16", random_variables(small))  # full width, small weights


def _readme_snippet():
  """The NNX research snippet of docs/export.md (the python block that defines `Refiner`)."""
  blocks = re.findall(r"```python\n(.*?)```", PAGE.read_text(), re.S)
  (snippet,) = [b for b in blocks if "class Refiner" in b]
  return snippet


@pytest.mark.slow
def test_readme_research_snippet_trains_the_head_and_keeps_the_backbone(tmp_path):
  model = poolnet_jax.create_model("resnet50", **TINY)
  variables = random_variables(model, seed=6)
  poolnet_jax.save_pretrained(tmp_path / "converted", "resnet50", variables, **TINY)
  snippet = _readme_snippet()
  assert snippet.count('"converted/"') == 1
  rng = np.random.default_rng(0)
  namespace = {
    "rgb_batch": rng.integers(0, 256, (2, 112, 112, 3), dtype=np.uint8),
    "masks": (rng.random((2, 112, 112, 1)) > 0.5).astype(np.float32),
  }
  code = snippet.replace('"converted/"', repr(str(tmp_path / "converted")))
  exec(compile(code, str(PAGE), "exec"), namespace)  # pylint: disable=exec-used
  refiner, step = namespace["model"], namespace["train_step"]
  losses = [float(namespace["loss"])]
  for _ in range(2):
    losses.append(
      float(step(refiner, namespace["optimizer"], namespace["images"], namespace["masks"]))
    )
  assert losses[2] < losses[1] < losses[0]
  after = _flat(nnx_bridge.to_linen(refiner.poolnet)[1])
  before = _flat(variables)
  changed = {k for k in before if not np.array_equal(before[k], after[k])}
  assert changed, "nothing trained"
  assert all(k[0] == "params" and k[1] != "base" for k in changed)  # backbone and BN frozen
  assert any(k[1] == "deep_pool" for k in changed)
  head = np.asarray(refiner.head.kernel.get_value())
  assert head.shape == (3, 3, 4, 1) and not np.array_equal(
    head, np.asarray(nnx.Conv(4, 1, kernel_size=(3, 3), rngs=nnx.Rngs(0)).kernel.get_value())
  )
