"""Initialisation schemes of the convolution kernels, chosen by `ConvImpl.init`.

Each Conv2d is given a `role` by the module that makes it (what the architecture
says about it); the scheme turns the role into the kernel's initializer.

- "original": N(0, 0.01) everywhere, as the authors' code draws it.
- "skipinit" (from scratch, without ImageNet weights; SkipInit/Fixup style): the
  original's frozen, identity BatchNorm makes N(0, 0.01) activations shrink layer
  after layer, so He-normal kernels (std sqrt(2 / fan_in)) instead; the first
  convolution divided by the input's scale (images are BGR minus the ImageNet
  mean, not normalised); gain 1 over the square root of the number of summed
  inputs for convolutions summed without a ReLU; the last convolution of each
  residual branch and the score convolution at zero, so every residual block
  starts as its shortcut and the first maps are flat.
"""

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

SCHEMES = ("original", "skipinit")
INPUT_SCALE = 64.0  # about the std of a mean-subtracted 8-bit image
ORIGINAL_STD = 0.01
# role -> factor on the He std under skipinit: "hidden" (followed by a ReLU), "input"
# (the first convolution), "zero" (a residual branch's end, the score), "sumN" (summed
# with N - 1 others, no ReLU).
ROLES = ("hidden", "input", "zero", "sum1", "sum3")


def he_std(shape):
  """sqrt(2 / fan_in) of an HWIO kernel."""
  return float(np.sqrt(2.0 / np.prod(shape[:-1])))


def skipinit_std(role, shape):
  """The std skipinit draws a kernel of `role` and `shape` from (0: zeros)."""
  if role == "zero":
    return 0.0
  if role == "input":
    return he_std(shape) / INPUT_SCALE
  if role.startswith("sum"):
    return he_std(shape) / np.sqrt(2.0 * int(role[3:]))
  return he_std(shape)


def kernel_init(scheme, role="hidden"):
  """The flax initializer of a kernel of `role` under `scheme`."""
  if scheme not in SCHEMES:
    raise ValueError(f"unknown initialisation {scheme!r}; expected one of {SCHEMES}")
  if role not in ROLES:
    raise ValueError(f"unknown convolution role {role!r}; expected one of {ROLES}")
  if scheme == "original":
    return nn.initializers.normal(stddev=ORIGINAL_STD)

  def init(key, shape, dtype):
    std = skipinit_std(role, shape)
    return nn.initializers.normal(stddev=std)(key, shape, dtype) if std else jnp.zeros(shape, dtype)

  return init
