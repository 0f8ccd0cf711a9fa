"""The field's saliency measures over a set of images, computed by pysodmetrics.

    metrics = SaliencyMetrics()          # or SaliencyMetrics("salmetric")
    for pred, gt in pairs:               # pred: uint8 map or float map in [0, 1]; gt: uint8 mask
      metrics.update(pred, gt)
    metrics.results()  # {"maxF", "meanF", "adpF", "MAE", "Sm", "maxE", "meanE", "adpE", "wF",
                       #  "images"}
    metrics.curves()   # precision, recall and F-measure at thresholds 0..255

Float maps are first written as 8-bit levels the way saved maps are
(`image.to_uint8_map`), so a model evaluated directly scores exactly what its
saved maps score. Ground truth is foreground where > 128; ground truths stored
as 0/1 are read as 0/255 (`decode.scale_01_mask`) and listed in
`metrics.scaled_gts`; those without a foreground pixel (scored 0 by the field's
convention) are listed in `metrics.background_only`.

Protocols:
- "pysodmetrics" (default): the rules of today's SOD toolkits. Each map is
  min-max normalised; a pixel is foreground at threshold t when its level is
  >= t; F (beta^2 = 0.3) is computed per image and threshold, then averaged
  over images (maxF, meanF); adpF and adpE threshold at twice the mean; wF
  has beta = 1.
- "salmetric": the PoolNet authors' evaluator (SalMetric). No normalisation; a
  pixel is foreground at t = 0..255 when its level is > t; per image
  precision = (TP + 1e-4) / (P + 1e-4) and recall = (TP + 1e-4) / (T + 1e-4);
  precision and recall are averaged over images, then F is taken per threshold
  (maxF its maximum, meanF its mean); MAE is |map - gt| / 255 with the raw
  ground-truth levels. These replace maxF, meanF, MAE and the curves; the
  measures SalMetric lacks (adpF, Sm, E-measures, wF) stay pysodmetrics'.
"""

import numpy as np
import py_sod_metrics

from poolnet_jax.data import decode
from poolnet_jax.imaging import image as image_lib

KEYS = ("maxF", "meanF", "adpF", "MAE", "Sm", "maxE", "meanE", "adpE", "wF")
PROTOCOLS = ("pysodmetrics", "salmetric")
BETA2 = 0.3
SALMETRIC_EPSILON = 1e-4
LEVELS = 256


def as_uint8_map(pred, name="prediction"):
  """Saliency map (H, W) or (H, W, 1): uint8 kept, floats in [0, 1] -> 8-bit levels."""
  pred = _squeeze(np.asarray(pred), name)
  if pred.dtype == np.uint8:
    return pred
  if pred.dtype == bool or not np.issubdtype(pred.dtype, np.floating):
    raise TypeError(f"{name}: expected a uint8 map or a float map in [0, 1], got {pred.dtype}")
  if pred.size and not (pred.min() >= 0.0 and pred.max() <= 1.0):  # also false for NaN
    raise ValueError(
      f"{name}: float map values must lie in [0, 1], got [{np.min(pred):.4g}, {np.max(pred):.4g}]"
    )
  return image_lib.to_uint8_map(pred)


def as_uint8_mask(gt, name="ground truth"):
  """Ground truth (H, W) or (H, W, 1): uint8 kept, bool -> 0 / 255."""
  gt = _squeeze(np.asarray(gt), name)
  if gt.dtype == bool:
    return gt.astype(np.uint8) * 255
  if gt.dtype != np.uint8:
    raise TypeError(f"{name}: expected a uint8 (or bool) mask, got {gt.dtype}")
  return gt


def _squeeze(array, name):
  if array.ndim == 3 and array.shape[-1] == 1:
    array = array[..., 0]
  if array.ndim != 2:
    raise ValueError(f"{name}: expected a (H, W) or (H, W, 1) array, got shape {array.shape}")
  return array


def salmetric_precision_recall(pred, gt):
  """SalMetric's precision and recall of one image at thresholds 0..255 (pixel > t)."""
  levels = pred.astype(np.int64).ravel()
  foreground = gt.ravel() > 128
  above = levels.size - np.cumsum(np.bincount(levels, minlength=LEVELS))
  true_above = foreground.sum() - np.cumsum(np.bincount(levels[foreground], minlength=LEVELS))
  precision = (true_above + SALMETRIC_EPSILON) / (above + SALMETRIC_EPSILON)
  recall = (true_above + SALMETRIC_EPSILON) / (foreground.sum() + SALMETRIC_EPSILON)
  return precision, recall


def fmeasure(precision, recall, beta2=BETA2):
  """F-measure of precision and recall arrays; 0 where both are 0."""
  numerator = (1 + beta2) * precision * recall
  denominator = beta2 * precision + recall
  return np.divide(
    numerator, denominator, out=np.zeros_like(numerator, dtype=np.float64), where=denominator > 0
  )


class SaliencyMetrics:
  """Accumulates maxF, meanF, adpF, MAE, S-measure, E-measures and weighted F over images."""

  def __init__(self, protocol="pysodmetrics"):
    if protocol not in PROTOCOLS:
      raise ValueError(f"unknown protocol {protocol!r}; expected one of {PROTOCOLS}")
    self.protocol = protocol
    self.count = 0
    self.scaled_gts = []  # names of ground truths stored as 0/1, read as 0/255
    self.background_only = []  # names of ground truths without a foreground pixel
    self._fmeasure = py_sod_metrics.FmeasureV2(
      {
        "fm": py_sod_metrics.FmeasureHandler(with_dynamic=True, with_adaptive=True, beta=BETA2),
        "p": py_sod_metrics.PrecisionHandler(with_dynamic=True, with_adaptive=False),
        "r": py_sod_metrics.RecallHandler(with_dynamic=True, with_adaptive=False),
      }
    )
    self._mae = py_sod_metrics.MAE()
    self._smeasure = py_sod_metrics.Smeasure()
    self._emeasure = py_sod_metrics.Emeasure()
    self._weighted_f = py_sod_metrics.WeightedFmeasure()
    self._sal_precision = np.zeros(LEVELS)
    self._sal_recall = np.zeros(LEVELS)
    self._sal_mae = 0.0

  def __len__(self):
    return self.count

  def update(self, pred, gt, name=None):
    """Adds one image: `pred` uint8 or float in [0, 1], `gt` uint8 mask, same (H, W).

    A 0/1 `gt` is read as 0/255; `name` (default: the image's index) goes to
    `scaled_gts` then, and to `background_only` for a gt with no pixel > 128.
    """
    label = f"{name}: " if name else ""
    pred = as_uint8_map(pred, f"{label}prediction")
    gt = as_uint8_mask(gt, f"{label}ground truth")
    if pred.shape != gt.shape:
      raise ValueError(
        f"{label}prediction shape {pred.shape} differs from ground truth shape {gt.shape}"
      )
    gt, scaled = decode.scale_01_mask(gt)
    name = str(self.count) if name is None else name
    if scaled:
      self.scaled_gts.append(name)
    if not (gt > 128).any():
      self.background_only.append(name)
    for metric in (self._fmeasure, self._mae, self._smeasure, self._emeasure, self._weighted_f):
      metric.step(pred, gt)
    if self.protocol == "salmetric":
      precision, recall = salmetric_precision_recall(pred, gt)
      self._sal_precision += precision
      self._sal_recall += recall
      self._sal_mae += np.abs(pred.astype(np.float64) - gt).mean() / 255.0
    self.count += 1

  def curves(self):
    """Mean precision, recall and F-measure per threshold level, thresholds 0..255 ascending."""
    self._check_not_empty()
    if self.protocol == "salmetric":
      precision, recall = self._sal_precision / self.count, self._sal_recall / self.count
      return dict(
        thresholds=np.arange(LEVELS),
        precision=precision,
        recall=recall,
        fmeasure=fmeasure(precision, recall),
      )
    # pysodmetrics orders its curves from threshold 255 down to 0.
    found = self._fmeasure.get_results()
    return dict(
      thresholds=np.arange(LEVELS),
      precision=found["p"]["dynamic"][::-1],
      recall=found["r"]["dynamic"][::-1],
      fmeasure=found["fm"]["dynamic"][::-1],
    )

  def results(self):
    """{key: float for key in KEYS} and "images": the number of images."""
    self._check_not_empty()
    f_curve = self.curves()["fmeasure"]
    emeasure = self._emeasure.get_results()["em"]
    results = {
      "maxF": f_curve.max(),
      "meanF": f_curve.mean(),
      "adpF": self._fmeasure.get_results()["fm"]["adaptive"],
      "MAE": (
        self._sal_mae / self.count
        if self.protocol == "salmetric"
        else self._mae.get_results()["mae"]
      ),
      "Sm": self._smeasure.get_results()["sm"],
      "maxE": emeasure["curve"].max(),
      "meanE": emeasure["curve"].mean(),
      "adpE": emeasure["adp"],
      "wF": self._weighted_f.get_results()["wfm"],
    }
    return {**{key: float(value) for key, value in results.items()}, "images": self.count}

  def _check_not_empty(self):
    if not self.count:
      raise ValueError("no images were evaluated")
