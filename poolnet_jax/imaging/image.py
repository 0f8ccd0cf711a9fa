"""The original network's input and output conventions."""

import numpy as np

# Per-channel mean of the original, in its (B, G, R) channel order.
MEAN_BGR = np.array([104.00699, 116.66877, 122.67892], np.float32)


def preprocess(rgb):
  """uint8 RGB images (..., H, W, 3) -> BGR minus the mean, float32.

  Works on numpy and jax arrays alike; no division by a standard deviation.
  """
  xp = np if isinstance(rgb, np.ndarray) else _jnp()
  rgb = xp.asarray(rgb)
  if rgb.shape[-1] != 3:
    raise ValueError(f"expected RGB images with 3 channels last, got shape {rgb.shape}")
  return rgb[..., ::-1].astype(xp.float32) - MEAN_BGR


def saliency_map(logits):
  """Logits -> saliency map in [0, 1] (the sigmoid)."""
  if isinstance(logits, np.ndarray):
    return 1.0 / (1.0 + np.exp(-logits.astype(np.float64)))
  import jax

  return jax.nn.sigmoid(logits)


def to_uint8_map(saliency):
  """Map in [0, 1] -> uint8 as the original writes it: cv2.imwrite rounds 255 * value."""
  return np.rint(np.clip(np.asarray(saliency, np.float64), 0.0, 1.0) * 255.0).astype(np.uint8)


def _jnp():
  import jax.numpy as jnp

  return jnp
