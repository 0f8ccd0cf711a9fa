"""The PyTorch reference (reference/torch_poolnet.py) against facts of the original models.

The reference is the yardstick of the parity tests, so it is checked here on its own:
state_dict contract, parameter counts, feature and output sizes, gradient flow.
"""

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from reference import torch_poolnet

REFERENCE = Path(__file__).resolve().parents[1] / "reference"  # the state_dict contracts
FILES = {
  "resnet50": "resnet",
  "vgg16": "vgg",
  "resnet50_edge": "resnet_edge",
  "vgg16_edge": "vgg_edge",
}
# Trainable-shaped parameter counts of the original PyTorch models.
PARAM_COUNTS = {
  "resnet50": 68_261_057,
  "vgg16": 52_512_705,
  "resnet50_edge": 69_557_642,
  "vgg16_edge": 53_631_352,
}
# Backbone feature sizes of the original PyTorch models at these input sizes.
FEATURE_SIZES = {
  "resnet50": {
    (300, 400): [(150, 200), (76, 101), (38, 51), (19, 26), (19, 26)],
    (301, 397): [(151, 199), (76, 100), (38, 50), (19, 25), (19, 25)],
    (320, 320): [(160, 160), (81, 81), (41, 41), (21, 21), (21, 21)],
    (128, 128): [(64, 64), (33, 33), (17, 17), (9, 9), (9, 9)],
  },
  "vgg16": {
    (300, 400): [(150, 200), (75, 100), (38, 50), (19, 25)],
    (301, 397): [(151, 199), (76, 100), (38, 50), (19, 25)],
    (320, 320): [(160, 160), (80, 80), (40, 40), (20, 20)],
    (128, 128): [(64, 64), (32, 32), (16, 16), (8, 8)],
  },
}
CHANNELS = {"resnet50": [64, 256, 512, 1024, 2048], "vgg16": [128, 256, 512, 512]}
ODD_SIZE = (129, 161)  # smallest-ish odd size whose deepest map still fits an 8x8 pool


@pytest.fixture(scope="module")
def models():
  """The four variants with their default random weights, built once."""
  built = {}
  for name in FILES:
    built[name] = torch_poolnet.randomize_(torch_poolnet.build(name), seed=sum(map(ord, name)))
  return built


def _input(size, batch=1, seed=0):
  generator = torch.Generator().manual_seed(seed)
  return torch.randn(batch, 3, *size, generator=generator) * 50


def _reference_rows(name):
  path = REFERENCE / f"state_dict_{FILES[name]}.txt"
  rows = []
  for line in path.read_text().splitlines():
    key, shape, dtype = line.split("\t")
    shape = tuple(int(d) for d in shape.strip("()").split(",") if d.strip())
    rows.append((key, shape, dtype))
  return rows


@pytest.mark.parametrize("name", sorted(FILES))
def test_state_dict_names_order_shapes_and_dtypes_equal_the_original(name, models):
  ours = [
    (key, tuple(value.shape), str(value.dtype).removeprefix("torch."))
    for key, value in models[name].state_dict().items()
  ]
  expected = _reference_rows(name)
  assert len(ours) == len(expected)
  for row, reference in zip(ours, expected):
    assert row == reference


@pytest.mark.parametrize("name", sorted(FILES))
def test_parameter_counts_equal_the_original(name, models):
  state = models[name].state_dict()
  trainable_shaped = sum(
    v.numel()
    for k, v in state.items()
    if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))
  )
  assert trainable_shaped == PARAM_COUNTS[name]
  assert torch_poolnet.parameter_count(models[name]) == PARAM_COUNTS[name]


@pytest.mark.parametrize("size", sorted(FEATURE_SIZES["vgg16"]), ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("backbone", ["resnet50", "vgg16"])
def test_backbone_feature_sizes_equal_the_original(backbone, size, models):
  features = models[backbone].base.backbone
  with torch.no_grad():
    outputs = features(torch.zeros(1, 3, *size))
  assert [tuple(f.shape[2:]) for f in outputs] == FEATURE_SIZES[backbone][size]
  assert [f.shape[1] for f in outputs] == CHANNELS[backbone]
  assert (
    torch_poolnet.backbone_feature_sizes(models[backbone], torch.zeros(1, 3, *size))
    == (FEATURE_SIZES[backbone][size])
  )


@pytest.mark.parametrize("name", ["resnet50", "vgg16"])
def test_plain_model_returns_logits_at_the_input_size(name, models):
  with torch.no_grad():
    out = models[name](_input(ODD_SIZE, batch=2))
  assert out.shape == (2, 1, *ODD_SIZE)
  assert torch.isfinite(out).all()
  with pytest.raises(ValueError, match="no mode 0"):
    models[name](_input(ODD_SIZE), mode=0)


@pytest.mark.parametrize("name", ["resnet50_edge", "vgg16_edge"])
def test_edge_model_outputs_in_both_modes(name, models):
  model = models[name]
  x = _input(ODD_SIZE)
  with torch.no_grad():
    saliency = model(x, mode=1)
    fused, sides = model(x, mode=0)
  assert saliency.shape == fused.shape == (1, 1, *ODD_SIZE)
  assert [s.shape for s in sides] == [(1, 1, *ODD_SIZE)] * len(model.block)
  assert len(sides) == {"resnet50_edge": 4, "vgg16_edge": 3}[name]
  # fuse.fuse is a 1x1 conv over the (already resized) side outputs.
  expected = F.conv2d(torch.cat(sides, 1), model.fuse.fuse.weight, model.fuse.fuse.bias)
  torch.testing.assert_close(fused, expected, rtol=1e-5, atol=1e-5)
  with pytest.raises(ValueError, match="mode"):
    model(x, mode=2)


@pytest.mark.parametrize("name", ["resnet50_edge", "vgg16_edge"])
def test_saliency_loss_does_not_reach_block_or_fuse(name, models):
  model = models[name]
  x = _input((128, 128))
  model.zero_grad(set_to_none=True)
  F.binary_cross_entropy_with_logits(
    model(x, mode=1), torch.rand(1, 1, 128, 128), reduction="sum"
  ).backward()
  grads = {k: p.grad for k, p in model.named_parameters()}
  untouched = [k for k in grads if k.startswith(("block.", "fuse."))]
  assert untouched and all(grads[k] is None for k in untouched)
  for k in (
    "edgeinfo.trans.0.weight",
    "score.score.weight",
    "deep_pool.0.conv_sum.weight",
    "base.ppm_cat.0.weight",
  ):
    assert grads[k] is not None and grads[k].abs().sum() > 0, k
  # The edge loss does train the block layers (so the check above can fail).
  model.zero_grad(set_to_none=True)
  fused, sides = model(x, mode=0)
  sum(o.sum() for o in [fused] + sides).backward()
  assert model.block[0].block_out[0].weight.grad.abs().sum() > 0
  assert model.fuse.fuse.weight.grad.abs().sum() > 0
  model.zero_grad(set_to_none=True)


def test_batchnorm_stays_in_inference_mode_under_train(models):
  model = models["resnet50"]
  x = _input((64, 64))
  with torch.no_grad():
    expected = model.base.backbone(x)[-1]
    model.train()
    try:
      got = model.base.backbone(x)[-1]
    finally:
      model.eval()
  torch.testing.assert_close(got, expected, rtol=0, atol=0)
  bn = model.base.resnet.bn1
  manual = (model.base.resnet.conv1(x) - bn.running_mean[:, None, None]) / torch.sqrt(
    bn.running_var[:, None, None] + 1e-5
  ) * bn.weight[:, None, None] + bn.bias[:, None, None]
  torch.testing.assert_close(bn(model.base.resnet.conv1(x)), manual, rtol=1e-5, atol=1e-4)


def test_the_original_fails_below_the_8x8_pool():
  model = torch_poolnet.build("resnet50")
  with torch.no_grad(), pytest.raises(RuntimeError, match="7x7.*too small"):
    model(torch.zeros(1, 3, 100, 100))  # layer4 is 7x7: AvgPool2d(8) has no output


def test_randomize_is_deterministic_and_dtype_independent():
  a = torch_poolnet.randomize_(torch_poolnet.build("vgg16_edge"), seed=7)
  b = torch_poolnet.randomize_(torch_poolnet.build("vgg16_edge").double(), seed=7)
  c = torch_poolnet.randomize_(torch_poolnet.build("vgg16_edge"), seed=8)
  for key, value in a.state_dict().items():
    assert b.state_dict()[key].dtype == torch.float64
    torch.testing.assert_close(b.state_dict()[key].float(), value, rtol=0, atol=0)
  assert not torch.equal(a.state_dict()["score.score.weight"], c.state_dict()["score.score.weight"])
  weight = a.state_dict()["deep_pool.0.conv_sum.weight"]  # fan_in 512 * 9
  variance = float(weight.var())
  expected = torch_poolnet.DEFAULT_GAINS["vgg16_edge"] / (512 * 9)
  assert abs(variance / expected - 1) < 0.01


@pytest.mark.parametrize("name", sorted(FILES))
def test_default_weights_give_logits_of_order_one_to_ten(name, models):
  model = models[name]
  x = _input((128, 160))
  with torch.no_grad():
    outputs = [model(x, mode=1)] if model.edge else [model(x)]
    if model.edge:
      fused, sides = model(x, mode=0)
      outputs += [fused] + sides
  rms = [float(o.pow(2).mean().sqrt()) for o in outputs]
  assert all(0.5 < r < 15 for r in rms), rms


def test_float64_model_agrees_with_float32_to_rounding(models):
  model = models["vgg16_edge"]
  x = _input((128, 128))
  with torch.no_grad():
    single = model(x, mode=1).double()
    model.double()
    try:
      double = model(x.double(), mode=1)
    finally:
      model.float()
  assert double.dtype == torch.float64
  rel = float((single - double).norm() / double.norm())
  assert 0 < rel < 1e-5


def test_scale_logits_scales_every_output():
  model = torch_poolnet.randomize_(torch_poolnet.build("vgg16_edge"), seed=1)
  x = _input((128, 128))

  def outputs():
    fused, sides = model(x, mode=0)
    return [model(x, mode=1), fused, *sides]

  with torch.no_grad():
    before = outputs()
    torch_poolnet.scale_logits_(model, 3.0)
    after = outputs()
  for b, a in zip(before, after):
    torch.testing.assert_close(a, 3.0 * b, rtol=1e-4, atol=1e-4)


def test_unknown_variant_is_named():
  with pytest.raises(ValueError, match="resnet101"):
    torch_poolnet.build("resnet101")
