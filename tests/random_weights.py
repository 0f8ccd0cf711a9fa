"""Random PoolNet variables for tests, without compiling `model.init`."""

import jax
import numpy as np

TINY = dict(width=0.125, stages=(1, 1, 1, 1))  # the demo's small model


def random_variables(model, seed=0, gain=0.5):
  """He-like kernels scaled so logits are of order 1-10; BN at identity statistics."""
  shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0), np.zeros((1, 128, 128, 3), np.float32))
  rng = np.random.default_rng(seed)

  def draw(path, leaf):
    name = path[-1].key
    if name == "kernel":
      return rng.standard_normal(leaf.shape, np.float32) * np.float32(
        np.sqrt(gain / np.prod(leaf.shape[:-1]))
      )
    if name in ("scale", "var"):
      return np.ones(leaf.shape, np.float32)
    if name == "num_batches_tracked":
      return np.zeros(leaf.shape, leaf.dtype)
    return rng.standard_normal(leaf.shape, np.float32) * np.float32(0.01)

  return jax.tree_util.tree_map_with_path(draw, shapes)
