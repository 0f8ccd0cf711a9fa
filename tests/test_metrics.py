"""SaliencyMetrics vs pysodmetrics' own classes; the SalMetric rules on hand-computed cases."""

import warnings

import numpy as np
import py_sod_metrics
import pytest

from poolnet_jax.inference import metrics

EPS = 1e-4  # SalMetric's epsilon


def _random_pairs(seed=0):
  """Maps and masks of a few sizes, with an all-background and an all-foreground mask."""
  rng = np.random.default_rng(seed)
  pairs = []
  for index, (h, w) in enumerate([(40, 52), (33, 27), (64, 64), (21, 45), (30, 30), (18, 25)]):
    yy, xx = np.mgrid[:h, :w]
    blob = (yy - rng.uniform(0, h)) ** 2 / h**2 + (xx - rng.uniform(0, w)) ** 2 / w**2
    gt = np.where(blob < rng.uniform(0.05, 0.3), 255, 0).astype(np.uint8)
    if index == 4:
      gt[:] = 0
    if index == 5:
      gt[:] = 255
    noisy = np.clip(np.exp(-blob * 6) + rng.normal(0, 0.25, (h, w)), 0, 1)
    pred = (noisy * rng.uniform(0.5, 1.0) * 255).astype(np.uint8)  # not spanning 0..255
    pairs.append((pred, gt))
  return pairs


def _pysodmetrics(pairs):
  """The measures computed with pysodmetrics' classes directly (the classic Fmeasure)."""
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # Fmeasure announces its future removal
    fm = py_sod_metrics.Fmeasure()
  mae, sm, em, wfm = (
    py_sod_metrics.MAE(),
    py_sod_metrics.Smeasure(),
    py_sod_metrics.Emeasure(),
    py_sod_metrics.WeightedFmeasure(),
  )
  for pred, gt in pairs:
    for metric in (fm, mae, sm, em, wfm):
      metric.step(pred=pred, gt=gt)
  f, e = fm.get_results(), em.get_results()["em"]
  return {
    "maxF": f["fm"]["curve"].max(),
    "meanF": f["fm"]["curve"].mean(),
    "adpF": f["fm"]["adp"],
    "MAE": mae.get_results()["mae"],
    "Sm": sm.get_results()["sm"],
    "maxE": e["curve"].max(),
    "meanE": e["curve"].mean(),
    "adpE": e["adp"],
    "wF": wfm.get_results()["wfm"],
  }, f["pr"]


def test_every_measure_equals_pysodmetrics_on_random_maps():
  pairs = _random_pairs()
  acc = metrics.SaliencyMetrics()
  for pred, gt in pairs:
    acc.update(pred, gt[..., None])  # (H, W, 1) masks as TFDS gives them
  expected, pr = _pysodmetrics(pairs)
  results = acc.results()
  assert results["images"] == len(pairs)
  assert set(results) == set(metrics.KEYS) | {"images"}
  for key in metrics.KEYS:
    assert results[key] == pytest.approx(expected[key], rel=1e-12, abs=1e-12), key
  assert 0.2 < results["maxF"] < 1 and 0 < results["MAE"] < 0.5  # not a degenerate case
  curves = acc.curves()
  # pysodmetrics' curves run from threshold 255 down to 0; ours ascend.
  np.testing.assert_allclose(curves["precision"], pr["p"][::-1], rtol=1e-12)
  np.testing.assert_allclose(curves["recall"], pr["r"][::-1], rtol=1e-12)
  assert curves["recall"][0] >= curves["recall"][-1]


def test_float_maps_are_scored_as_their_8_bit_levels():
  rng = np.random.default_rng(1)
  gt = np.zeros((30, 40), np.uint8)
  gt[8:20, 10:30] = 255
  floats = [rng.uniform(0, 1, gt.shape) for _ in range(3)]
  acc = metrics.SaliencyMetrics()
  for saliency in floats:
    acc.update(saliency, gt)
  levels = [np.rint(saliency * 255).astype(np.uint8) for saliency in floats]  # as cv2.imwrite
  expected, _ = _pysodmetrics([(pred, gt) for pred in levels])
  for key in metrics.KEYS:
    assert acc.results()[key] == pytest.approx(expected[key], rel=1e-12), key


def test_salmetric_single_image_by_hand():
  pred = np.array([[0, 100], [200, 255]], np.uint8)
  gt = np.array([[0, 255], [255, 0]], np.uint8)
  acc = metrics.SaliencyMetrics("salmetric")
  acc.update(pred, gt)
  curves = acc.curves()
  # pixel > t: three pixels (two true) below t = 100, two (one true) to 199, one (false) to
  # 254, none at 255 (where (0 + eps) / (0 + eps) makes precision 1).
  expected_p = np.array(
    [(2 + EPS) / (3 + EPS)] * 100 + [(1 + EPS) / (2 + EPS)] * 100 + [EPS / (1 + EPS)] * 55 + [1.0]
  )
  expected_r = np.array([1.0] * 100 + [(1 + EPS) / (2 + EPS)] * 100 + [EPS / (2 + EPS)] * 56)
  np.testing.assert_allclose(curves["precision"], expected_p, rtol=1e-12)
  np.testing.assert_allclose(curves["recall"], expected_r, rtol=1e-12)
  p0 = (2 + EPS) / (3 + EPS)
  results = acc.results()
  assert results["maxF"] == pytest.approx(1.3 * p0 / (0.3 * p0 + 1), rel=1e-12)  # 0.7222
  assert results["MAE"] == pytest.approx((0 + 155 + 55 + 255) / 4 / 255, rel=1e-12)


def test_salmetric_averages_precision_and_recall_before_f():
  acc = metrics.SaliencyMetrics("salmetric")
  acc.update(np.array([[0, 100], [200, 255]], np.uint8), np.array([[0, 255], [255, 0]], np.uint8))
  acc.update(np.array([[255, 255], [0, 0]], np.uint8), np.full((2, 2), 255, np.uint8))
  # t < 100: image 1 P = (2+e)/(3+e), R = 1; image 2 P = 1, R = (2+e)/(4+e).
  p = ((2 + EPS) / (3 + EPS) + 1) / 2
  r = (1 + (2 + EPS) / (4 + EPS)) / 2
  assert acc.results()["maxF"] == pytest.approx(1.3 * p * r / (0.3 * p + r), rel=1e-12)  # 0.8125
  # The mean of the two images' own F at t = 0 would be lower.
  f1, f2 = 1.3 * (2 / 3) / (0.3 * 2 / 3 + 1), 1.3 * 0.5 / (0.3 + 0.5)
  assert acc.results()["maxF"] > (f1 + f2) / 2 + 0.04


def test_salmetric_does_not_normalise_the_map():
  gt = np.zeros((6, 6), np.uint8)
  gt[1:4, 1:4] = 255
  dim, bright = (gt > 0) * np.uint8(100), (gt > 0) * np.uint8(200)
  found = {}
  for protocol in metrics.PROTOCOLS:
    for name, pred in (("dim", dim), ("bright", bright)):
      acc = metrics.SaliencyMetrics(protocol)
      acc.update(pred.astype(np.uint8), gt)
      found[protocol, name] = acc.results()
  # pysodmetrics min-max normalises: both maps are the perfect mask.
  assert found["pysodmetrics", "dim"] == found["pysodmetrics", "bright"]
  assert found["pysodmetrics", "dim"]["MAE"] == 0
  # SalMetric: the dim map is the mask (F = 1) for t < 100 only, empty (P = 1, R = e / (9 + e))
  # above, and 155 levels off.
  r_empty = EPS / (9 + EPS)
  f_empty = 1.3 * r_empty / (0.3 + r_empty)
  for name, level in (("dim", 100), ("bright", 200)):
    assert found["salmetric", name]["meanF"] == pytest.approx(
      (level + (256 - level) * f_empty) / 256, rel=1e-12
    )
  assert found["salmetric", "dim"]["MAE"] == pytest.approx(9 / 36 * 155 / 255, rel=1e-12)
  assert found["salmetric", "dim"]["maxF"] == pytest.approx(1.0, rel=1e-9)


def test_bad_inputs_are_named():
  acc = metrics.SaliencyMetrics()
  with pytest.raises(ValueError, match="img_7.*shape"):
    acc.update(np.zeros((4, 5), np.uint8), np.zeros((5, 4), np.uint8), name="img_7")
  with pytest.raises(ValueError, match=r"\[0, 1\]"):
    acc.update(np.full((4, 4), 2.0), np.zeros((4, 4), np.uint8))
  with pytest.raises(TypeError, match="uint8"):
    acc.update(np.zeros((4, 4), np.int32), np.zeros((4, 4), np.uint8))
  with pytest.raises(ValueError, match="no images"):
    acc.results()
  with pytest.raises(ValueError, match="protocol"):
    metrics.SaliencyMetrics("matlab")


def test_ground_truths_stored_as_0_1_are_read_as_0_255_and_background_only_counted():
  pairs = _random_pairs(seed=3)  # index 4 is all background, index 5 all foreground
  acc = metrics.SaliencyMetrics()
  for index, (pred, gt) in enumerate(pairs):
    stored = gt // 255 if index in (0, 2) else gt  # two masks saved as 0/1
    acc.update(pred, stored, name=f"im{index}.png")
  expected, _ = _pysodmetrics(pairs)  # pysodmetrics on the 0/255 masks
  for key in metrics.KEYS:
    assert acc.results()[key] == pytest.approx(expected[key], rel=1e-12, abs=1e-12), key
  assert acc.scaled_gts == ["im0.png", "im2.png"]
  assert acc.background_only == ["im4.png"]
  # Unnamed images are named by their index; an all-zero mask is not "0/1".
  unnamed = metrics.SaliencyMetrics("salmetric")
  unnamed.update(pairs[4][0], pairs[4][1])
  unnamed.update(pairs[0][0], pairs[0][1] // 255)
  assert unnamed.background_only == ["0"] and unnamed.scaled_gts == ["1"]
