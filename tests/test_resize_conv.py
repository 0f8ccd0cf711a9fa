"""kernels/resize_conv.py and Conv2d(resize_to=...) against torch: interpolate, then conv2d."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from poolnet_jax.imaging.kernels import resize_conv
from poolnet_jax.models import layers


def _random(shape, seed):
  return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def _torch_resize_conv(x, kernel, size, cotangent):
  """Output, input gradient and kernel gradient of torch's interpolate + conv2d (NHWC, HWIO)."""
  xt = torch.from_numpy(x.transpose(0, 3, 1, 2).copy()).requires_grad_(True)
  kt = torch.from_numpy(kernel.transpose(3, 2, 0, 1).copy()).requires_grad_(True)
  y = F.conv2d(F.interpolate(xt, size, mode="bilinear", align_corners=True), kt, padding=1)
  y.backward(torch.from_numpy(cotangent.transpose(0, 3, 1, 2).copy()))
  return (
    y.detach().numpy().transpose(0, 2, 3, 1),
    xt.grad.numpy().transpose(0, 2, 3, 1),
    kt.grad.numpy().transpose(2, 3, 1, 0),
  )


def _assert_close(actual, expected):
  # Kernel gradients sum 30,000 products: resize-then-convolve is 4e-6 off torch there too.
  np.testing.assert_allclose(
    np.asarray(actual), expected, atol=1e-5 * max(1.0, np.abs(expected).max()), rtol=0
  )


@pytest.mark.parametrize(
  "shape,size,channels_out",
  [
    ((1, 19, 26, 16), (150, 200), 8),  # a guiding flow's 8x upsampling
    ((2, 5, 7, 6), (19, 23), 4),  # batch 2, non-integer factors
    ((1, 12, 9, 3), (5, 4), 2),  # downsampling
    ((1, 4, 6, 5), (1, 9), 3),  # one output row
  ],
)
def test_resize_conv3x3_matches_torch(shape, size, channels_out):
  x = _random(shape, 0)
  kernel = _random((3, 3, shape[-1], channels_out), 1) * 0.1
  cotangent = _random((shape[0],) + size + (channels_out,), 2)
  y, vjp = jax.vjp(
    lambda a, b: resize_conv.resize_conv3x3(a, b, size), jnp.asarray(x), jnp.asarray(kernel)
  )
  dx, dk = vjp(jnp.asarray(cotangent))
  for actual, expected in zip((y, dx, dk), _torch_resize_conv(x, kernel, size, cotangent)):
    _assert_close(actual, expected)


def test_flops_of_the_largest_guiding_flow():
  # 19x26x512 -> 150x200 -> 128 channels, by hand: taps at 19x26, then along W, then along H.
  fused = 19 * 26 * 512 * 9 * 128 + 19 * 3 * 128 * 200 * 3 * 26 + 200 * 128 * 150 * 3 * 19
  assert resize_conv.flops((1, 19, 26, 512), (150, 200), 128) == (fused, 150 * 200 * 4 * 512 * 128)
  assert resize_conv.worthwhile((1, 19, 26, 512), (150, 200), 128)
  assert not resize_conv.worthwhile((1, 76, 101, 256), (150, 200), 128)  # FAM: 1.25x Winograd


@pytest.mark.parametrize(
  "shape,size,fused", [((1, 10, 13, 64), (80, 104), True), ((1, 40, 52, 32), (80, 104), False)]
)
def test_conv2d_resize_to_equals_resize_then_xla_convolution(shape, size, fused):
  x = jnp.asarray(_random(shape, 3))
  conv = layers.Conv2d(16, 3, padding=1, impl=layers.ConvImpl(winograd=True, resize_conv=True))
  variables = conv.init(jax.random.key(0), x, size)
  xla = layers.Conv2d(16, 3, padding=1, impl=layers.XLA)
  expected = np.asarray(xla.apply(variables, x, size))
  _assert_close(conv.apply(variables, x, size), expected)
  jaxpr = str(jax.make_jaxpr(lambda v: conv.apply(variables, v, size))(x))
  assert ("conv_general_dilated" not in jaxpr and "gather" not in jaxpr) == fused
  assert "conv_general_dilated" in str(jax.make_jaxpr(lambda v: xla.apply(variables, v, size))(x))


@pytest.mark.parametrize(
  "impl,fused",
  [
    (layers.ConvImpl(winograd=False, resize_conv=True), True),
    (layers.ConvImpl(winograd=True, resize_conv=False), False),
  ],
)
def test_resize_conv_has_its_own_switch(impl, fused):
  x, size = jnp.asarray(_random((1, 10, 13, 64), 4)), (80, 104)
  conv = layers.Conv2d(16, 3, padding=1, impl=impl)
  variables = conv.init(jax.random.key(0), x, size)
  expected = np.asarray(layers.Conv2d(16, 3, padding=1).apply(variables, x, size))
  _assert_close(conv.apply(variables, x, size), expected)
  jaxpr = str(jax.make_jaxpr(lambda v: conv.apply(variables, v, size))(x))
  assert ("gather" not in jaxpr) == fused  # the resize's gathers are gone only when fused
