"""From-scratch initialisation for PoolNet without ImageNet weights (SkipInit/Fixup style).

The original draws every convolution from N(0, 0.01): with its frozen (identity)
BatchNorm, activations then shrink layer after layer when no backbone is loaded.
`skipinit` instead keeps them near unit scale: He-normal kernels (std
sqrt(2 / fan_in)), the first convolution divided by the input's scale (images
are BGR minus the ImageNet mean, not normalised), gain 1 over the square root
of the number of summed inputs for the FAM convolutions without a ReLU, and the
last convolution of each residual branch and the score convolution at zero, so
every residual block starts as its shortcut and the first maps are flat.
"""

import flax
import jax
import jax.numpy as jnp
import numpy as np

INITS = ("", "skipinit")  # "": keep the model's own initialisation (the original's)
INPUT_SCALE = 64.0  # about the std of a mean-subtracted 8-bit image
FIRST_CONVS = (("base", "resnet", "conv1"), ("base", "vgg16", "base", "0"))
ZERO_LAST = ("conv3",)  # last conv of a ResNet bottleneck's branch
ZERO_SCORE = (("score", "score"),)
LINEAR = {"convs": 3, "conv_sum": 1, "conv_sum_c": 3}  # FAM convs with no ReLU: inputs summed


def he_std(shape):
  """sqrt(2 / fan_in) of an HWIO kernel."""
  return float(np.sqrt(2.0 / np.prod(shape[:-1])))


def kernel_std(path, shape, input_scale=INPUT_SCALE):
  """The std `skipinit` draws the kernel at `path` (a tuple of names) from; 0 = zeros."""
  module = path[:-1]
  if module[-1] in ZERO_LAST or module in ZERO_SCORE:
    return 0.0
  if module in FIRST_CONVS:
    return he_std(shape) / input_scale
  for name in module:
    if name in LINEAR:  # gain 1, divided by the sqrt of the number of summed terms
      return he_std(shape) / np.sqrt(2.0 * LINEAR[name])
  return he_std(shape)


def skipinit(params, rng, input_scale=INPUT_SCALE):
  """`params` with every 4-D conv kernel redrawn as `skipinit` says; the rest kept."""
  flat = flax.traverse_util.flatten_dict(flax.core.unfreeze(params))
  keys = jax.random.split(rng, len(flat))
  out = {}
  for key, (path, value) in zip(keys, sorted(flat.items())):
    if path[-1] == "kernel" and np.ndim(value) == 4:
      std = kernel_std(path, value.shape, input_scale)
      value = std * jax.random.normal(key, value.shape, jnp.float32)
    out[path] = np.asarray(value)
  return flax.traverse_util.unflatten_dict(out)


def apply_init(name, variables, rng):
  """`variables` with the from-scratch initialisation `name` applied to their params."""
  if name not in INITS:
    raise ValueError(f"unknown init {name!r}; expected one of {INITS}")
  if not name:
    return variables
  return {**variables, "params": skipinit(variables["params"], rng)}
