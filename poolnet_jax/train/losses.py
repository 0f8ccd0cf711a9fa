"""The original's losses: summed BCE for saliency, class-balanced summed BCE for edges."""

import jax.numpy as jnp
import optax


def saliency_loss(logits, labels):
  """Binary cross-entropy with logits summed over pixels and images."""
  return jnp.sum(optax.sigmoid_binary_cross_entropy(logits, labels))


def balanced_edge_loss(logits, labels):
  """Class-balanced BCE, summed.

  With P pixels equal to 1 and N equal to 0 (T = P + N) in the batch, as the
  original counts them: weight N/T on the ones, 1.1 * P/T on the zeros and 0 on
  every other value.
  """
  positive = (labels == 1).astype(jnp.float32)
  negative = (labels == 0).astype(jnp.float32)
  num_pos, num_neg = jnp.sum(positive), jnp.sum(negative)
  total = jnp.maximum(num_pos + num_neg, 1.0)
  weights = positive * num_neg / total + negative * 1.1 * num_pos / total
  return jnp.sum(weights * optax.sigmoid_binary_cross_entropy(logits, labels))


def edge_loss(fused, sides, labels):
  """Balanced BCE of the fused output plus every side output."""
  return sum(balanced_edge_loss(out, labels) for out in [fused, *sides])
