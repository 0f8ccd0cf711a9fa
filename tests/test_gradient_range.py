"""bench.gradient_range: its comparison against hand-counted arrays, its loss scaling."""

import numpy as np

from bench import gradient_range


def test_compare_counts_underflow_overflow_and_relative_errors():
  reference = {"a": np.array([1.0, 2e-8, 0.0, 3.0]), "b": np.array([4.0, -1e-9])}
  # a: 2e-8 lost (0 where float32 is not); 0 kept 0 is no underflow; |[0, -2e-8, 0, 0]| /
  # |a| is 2e-8 / sqrt(10). b: -1e-9 lost; error 1e-9 / sqrt(16 + 1e-18).
  grads = {"a": np.array([1.0, 0.0, 0.0, 3.0]), "b": np.array([4.0, 0.0])}
  found = gradient_range.compare(grads, reference)
  assert found["nonfinite"] == 0 and found["underflow"] == 2
  np.testing.assert_allclose(found["lost_median"], (2e-8 + 1e-9) / 2)
  errors = [2e-8 / np.sqrt(10.0), 1e-9 / 4.0]
  np.testing.assert_allclose(found["error_max"], max(errors))
  np.testing.assert_allclose(found["error_median"], np.median(errors))


def test_compare_gives_no_error_figures_once_a_gradient_overflowed():
  reference = {"a": np.array([1.0, 2.0])}
  found = gradient_range.compare({"a": np.array([np.inf, np.nan])}, reference)
  assert found["nonfinite"] == 2 and found["underflow"] == 0 and found["lost_median"] is None
  assert found["error_median"] is None and found["error_max"] is None


def test_gradients_divide_the_loss_scale_back():
  batch = gradient_range.scene_batch(112, 112)
  plain = gradient_range.gradients("resnet50", 1 / 64, "float32", batch, 1.0)
  scaled = gradient_range.gradients("resnet50", 1 / 64, "float32", batch, 64.0)
  assert plain.keys() == scaled.keys() and len(plain) > 10
  assert any(np.abs(g).max() > 0 for g in plain.values())
  for key, grad in plain.items():
    np.testing.assert_allclose(scaled[key], grad, rtol=1e-5, atol=1e-12, err_msg=key)
