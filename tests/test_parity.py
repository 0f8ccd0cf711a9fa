"""Converted weights give the PyTorch reference's outputs to float32 rounding.

The reference (reference/torch_poolnet.py) is written independently of the Flax
model. Criterion (docs/weights.md): against the PyTorch
model in float64, the JAX float32 logits are within 1e-5 relative L2 and no
further than about twice PyTorch's own float32 distance; sigmoid maps within 1e-4.
"""

import functools

import jax
import numpy as np
import pytest
import torch

import poolnet_jax
from reference import torch_poolnet

# Every variant and output at an odd size (every resize and crop path); the plain models
# also at a square and at a small size near the minimum. Each case compiles a full model.
ODD = (301, 397)
CASES = (
  [(name, mode, ODD) for name in ("resnet50", "vgg16") for mode in ("saliency",)]
  + [(name, mode, ODD) for name in ("resnet50_edge", "vgg16_edge") for mode in ("saliency", "edge")]
  + [("resnet50", "saliency", (320, 320)), ("vgg16", "saliency", (128, 160))]
)
REL_L2 = 1e-5
MAP_ABS = 1e-4
TORCH_F32_FACTOR = 2.0
DISTANCES = []  # (case, size, jax distance, torch float32 distance), printed at the end


@functools.lru_cache(maxsize=None)
def converted(name, tmp_root):
  """Random torch weights -> legacy .pth -> Flax, plus the torch model itself."""
  model = torch_poolnet.build(name).eval()
  torch_poolnet.randomize_(model, seed=sum(map(ord, name)))
  path = f"{tmp_root}/{name}.pth"
  torch.save(model.state_dict(), path, _use_new_zipfile_serialization=False)
  flax_model, variables = poolnet_jax.load_torch_checkpoint(path)
  return model, flax_model, variables


def _torch_outputs(model, x, mode, dtype):
  model = model.to(dtype)
  with torch.no_grad():
    xt = torch.from_numpy(x.transpose(0, 3, 1, 2)).to(dtype)
    if mode == "saliency":
      out = model(xt, mode=1) if hasattr(model, "fuse") else model(xt)
      outs = [out]
    else:
      fused, sides = model(xt, mode=0)
      outs = [fused] + list(sides)
  model.float()
  return [o.numpy().astype(np.float64).transpose(0, 2, 3, 1) for o in outs]


def _rel_l2(a, b):
  return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def _sigmoid(x):
  return 1.0 / (1.0 + np.exp(-x))


@pytest.mark.slow
@pytest.mark.parametrize(
  "name,mode,size", CASES, ids=[f"{n}-{m}-{s[0]}x{s[1]}" for n, m, s in CASES]
)
def test_converted_model_matches_torch(name, mode, size, tmp_path_factory):
  model, flax_model, variables = converted(name, str(tmp_path_factory.getbasetemp()))
  x = np.random.default_rng(size[0]).normal(0, 50, (1, *size, 3)).astype(np.float32)
  reference = _torch_outputs(model, x, mode, torch.float64)
  torch32 = _torch_outputs(model, x, mode, torch.float32)
  apply = jax.jit(functools.partial(flax_model.apply, mode=mode))
  outputs = jax.tree_util.tree_leaves(apply(variables, x))
  assert len(outputs) == len(reference)
  for out, ref, t32 in zip(outputs, reference, torch32):
    out = np.asarray(out, np.float64)
    rms = float(np.sqrt(np.mean(ref**2)))
    assert 0.3 < rms < 30, f"reference logit RMS {rms} outside the informative range"
    ours, theirs = _rel_l2(out, ref), _rel_l2(t32, ref)
    DISTANCES.append((name, mode, size, ours, theirs))
    print(f"{name} {mode} {size}: jax {ours:.2e}, torch float32 {theirs:.2e}, RMS {rms:.1f}")
    assert ours < REL_L2
    assert ours <= TORCH_F32_FACTOR * theirs + 1e-7
    assert np.abs(_sigmoid(out) - _sigmoid(ref)).max() < MAP_ABS
