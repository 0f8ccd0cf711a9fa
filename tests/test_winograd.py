"""Winograd F(2x2, 3x3) and the Conv2d fast path against `lax.conv_general_dilated`."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from poolnet_jax.imaging.kernels import winograd
from poolnet_jax.models import layers


def _direct(x, kernel, stride=1, padding=1, dilation=1):
  return jax.lax.conv_general_dilated(
    x,
    kernel,
    (stride, stride),
    [(padding, padding)] * 2,
    rhs_dilation=(dilation, dilation),
    dimension_numbers=("NHWC", "HWIO", "NHWC"),
    precision=jax.lax.Precision.HIGHEST,
  )


def _random(shape, seed, dtype=np.float64):
  return np.random.default_rng(seed).normal(size=shape).astype(dtype)


def _rel(a, b):
  return float(np.linalg.norm(np.asarray(a, np.float64) - b) / np.linalg.norm(b))


# (N, H, W, C, K, dilation): odd and even sizes, a 1x1 map, several images, dilation 2.
SHAPES = [
  (1, 5, 7, 3, 4, 1),
  (2, 8, 6, 5, 3, 1),
  (1, 1, 1, 2, 3, 1),
  (1, 19, 26, 4, 6, 2),
  (1, 7, 6, 3, 2, 2),
]


@pytest.mark.parametrize("n,h,w,c,k,dilation", SHAPES)
def test_matches_direct_convolution_in_float64(n, h, w, c, k, dilation):
  x, kernel = _random((n, h, w, c), 0), _random((3, 3, c, k), 1)
  with jax.enable_x64(True):
    ours = winograd.conv3x3_dilated(jnp.asarray(x), jnp.asarray(kernel), dilation)
    reference = np.asarray(_direct(jnp.asarray(x), jnp.asarray(kernel), 1, dilation, dilation))
  assert ours.shape == reference.shape
  assert _rel(ours, reference) < 1e-13


def test_bands_cover_the_map(monkeypatch):
  """A map cut into several bands (one tile row each, the last one overhanging)."""
  monkeypatch.setattr(winograd, "CHUNK_BYTES", 1)
  x, kernel = _random((2, 9, 10, 6), 2), _random((3, 3, 6, 5), 3)
  with jax.enable_x64(True):
    ours = winograd.conv3x3(jnp.asarray(x), jnp.asarray(kernel))
    reference = np.asarray(_direct(jnp.asarray(x), jnp.asarray(kernel)))
  assert _rel(ours, reference) < 1e-13


def test_float32_error_is_that_of_a_direct_convolution():
  """Against a float64 reference, float32 Winograd stays within 2x XLA's float32 error."""
  x, kernel = _random((1, 40, 52, 64), 4), _random((3, 3, 64, 32), 5) / 24
  with jax.enable_x64(True):
    reference = np.asarray(_direct(jnp.asarray(x), jnp.asarray(kernel)))
  x32, k32 = jnp.asarray(x, jnp.float32), jnp.asarray(kernel, jnp.float32)
  ours, direct = _rel(winograd.conv3x3(x32, k32), reference), _rel(_direct(x32, k32), reference)
  assert ours < 1e-6
  assert ours < 2 * direct


@pytest.mark.parametrize("n,h,w", [(1, 9, 12), (2, 7, 11)])
def test_gradients_match_direct_convolution(n, h, w):
  x, kernel, cot = _random((n, h, w, 4), 6), _random((3, 3, 4, 5), 7), _random((n, h, w, 5), 8)
  with jax.enable_x64(True):

    def loss(conv):
      return lambda x, k: jnp.sum(conv(x, k) * cot)

    ours = jax.grad(loss(winograd.conv3x3), argnums=(0, 1))(jnp.asarray(x), jnp.asarray(kernel))
    reference = jax.grad(loss(_direct), argnums=(0, 1))(jnp.asarray(x), jnp.asarray(kernel))
  for a, b in zip(ours, reference):
    assert _rel(a, np.asarray(b)) < 1e-12


@pytest.mark.parametrize(
  "k,stride,padding,dilation,size,uses_winograd",
  [
    (3, 1, 1, 1, (48, 40), True),  # enough tiles
    (3, 1, 1, 1, (6, 5), False),  # too small: XLA's convolution
    (3, 1, 2, 2, (48, 40), True),  # dilated: Winograd on sub-images
    (1, 1, 0, 1, (7, 9), False),  # matrix product
    (1, 2, 0, 1, (7, 9), False),  # strided matrix product
    (7, 2, 3, 1, (11, 13), False),  # XLA's convolution
    (3, 1, 1, 1, (2, 3), False),  # map smaller than the kernel: shifted copies
    (3, 1, 2, 2, (1, 5), False),  # the same, dilated
  ],
)
def test_conv2d_fast_equals_xla(k, stride, padding, dilation, size, uses_winograd):
  module = layers.Conv2d(64, k, stride, padding, dilation, use_bias=True)
  x = jnp.asarray(_random((1, *size, 64), 9, np.float32))
  assert uses_winograd == (
    winograd.supports(k, stride, padding, dilation) and winograd.worthwhile(x.shape, 64, dilation)
  )
  variables = module.init(jax.random.PRNGKey(0), x)
  fast = module.clone(impl=layers.ConvImpl(winograd=True)).apply(variables, x)
  xla = module.clone(impl=layers.XLA).apply(variables, x)
  assert fast.shape == xla.shape
  assert _rel(fast, np.asarray(xla, np.float64)) < 1e-6


def test_conv_impl_choices():
  assert layers.conv_impl("xla") == layers.XLA
  assert layers.conv_impl("fast") == layers.ConvImpl(winograd=True, resize_conv=True)
  assert layers.conv_impl(None) == layers.ConvImpl(True, True)  # the tests run on CPU
  assert layers.conv_impl(None, backend="gpu") == layers.XLA
  assert layers.conv_impl("xla", resize=True) == layers.ConvImpl(False, True)
  with pytest.raises(ValueError, match="winograd-please"):
    layers.conv_impl("winograd-please")


def test_models_with_different_impls_run_their_own_in_one_process():
  """The implementation is a model field, part of every jit cache key: no stale programs."""
  import poolnet_jax  # pylint: disable=import-outside-toplevel

  kwargs = dict(width=0.5, stages=(1, 1, 1, 1))
  fast = poolnet_jax.create_model("resnet50", conv="fast", **kwargs)
  xla = poolnet_jax.create_model("resnet50", conv="xla", **kwargs)
  x = jnp.asarray(_random((1, 128, 160, 3), 3, np.float32)) * 50
  variables = jax.jit(xla.init)(jax.random.PRNGKey(0), x)
  apply = jax.jit(lambda model, v, x: model.apply(v, x), static_argnums=0)
  ops = {
    name: str(jax.make_jaxpr(apply, static_argnums=0)(model, variables, x))
    for name, model in (("fast", fast), ("xla", xla))
  }
  # Winograd's transforms are dot_generals with the 4x4 B^T; XLA's path is all convolutions.
  assert ops["xla"].count("conv_general_dilated") > ops["fast"].count("conv_general_dilated")
  results = [np.asarray(apply(m, variables, x), np.float64) for m in (fast, xla, fast)]
  assert _rel(results[0], results[1]) < 1e-5
  np.testing.assert_array_equal(results[0], results[2])
