"""`python -m poolnet_jax.predict` end to end on a tiny saved model."""

import os
import subprocess
import sys

import jax
import numpy as np
from PIL import Image

import poolnet_jax

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OVERRIDES = dict(width=0.125, stages=(1, 1, 1, 1))


def test_predict_folder_with_odd_sizes_and_a_corrupt_file(tmp_path):
  model = poolnet_jax.create_model("resnet50", **OVERRIDES)
  variables = jax.jit(model.init)(jax.random.PRNGKey(3), np.zeros((1, 128, 128, 3), np.float32))
  poolnet_jax.save_pretrained(tmp_path / "model", "resnet50", variables, **OVERRIDES)
  images = tmp_path / "images"
  images.mkdir()
  rng = np.random.default_rng(0)
  sizes = {"a": (121, 133), "b": (121, 133), "c": (140, 118), "small": (40, 56)}
  for name, (h, w) in sizes.items():
    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(images / f"{name}.png")
  (images / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
  result = subprocess.run(
      [sys.executable, "-m", "poolnet_jax.predict", f"--checkpoint={tmp_path / 'model'}",
       str(images), f"--output={tmp_path / 'maps'}", "--cutout"],
      cwd=ROOT, env={**os.environ, "PYTHONPATH": ROOT, "POOLNET_JAX_CACHE": ""},
      capture_output=True, text=True, timeout=600)
  assert result.returncode == 1, result.stderr[-2000:]  # one input failed
  assert "broken.jpg" in result.stderr
  for name, (h, w) in sizes.items():
    saliency = np.asarray(Image.open(tmp_path / "maps" / f"{name}.png"))
    assert saliency.shape == (h, w) and saliency.dtype == np.uint8
    cutout = np.asarray(Image.open(tmp_path / "maps" / f"{name}_cutout.png"))
    assert cutout.shape == (h, w, 4)
    np.testing.assert_array_equal(cutout[..., 3], saliency)
  # A map equals the model's own sigmoid output, to 8-bit rounding.
  rgb = np.asarray(Image.open(images / "c.png"))
  expected = jax.nn.sigmoid(model.apply(variables, poolnet_jax.preprocess(rgb[None])))
  written = np.asarray(Image.open(tmp_path / "maps" / "c.png"), np.float64) / 255
  assert np.abs(written - np.asarray(expected)[0, ..., 0]).max() <= 1.01 / 255
