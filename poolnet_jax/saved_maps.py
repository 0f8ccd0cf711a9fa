"""Saved maps scored against ground truth: files matched by stem, maps resized like the toolkits.

    metrics, problems = evaluate_folders("maps/", "ECSSD/ground_truth_mask")

Maps are resized to their ground truth's size bilinearly by OpenCV's
INTER_LINEAR rule, as the SOD toolkits do (`resize_map`).
"""

import os

import numpy as np
import tqdm

from poolnet_jax import metrics as metrics_lib
from poolnet_jax import resize as resize_lib
from poolnet_jax.cli import UserError
from poolnet_jax.data import decode, files


def resize_map(levels, size):
  """uint8 map -> uint8 map of `size` = (H, W), bilinear by OpenCV's INTER_LINEAR rule."""
  if levels.shape == tuple(size):
    return levels
  resized = resize_lib.resize(levels, size, align_corners=False)
  return np.clip(np.rint(resized), 0, 255).astype(np.uint8)


def match_by_stem(pred_dir, gt_dir):
  """([(stem, map path, gt path)], unmatched map paths, unmatched gt paths)."""
  preds, gts = files.list_images(pred_dir), files.list_images(gt_dir)
  pairs = [(stem, preds[stem], gts[stem]) for stem in sorted(preds.keys() & gts.keys())]
  return (
    pairs,
    [preds[s] for s in sorted(preds.keys() - gts.keys())],
    [gts[s] for s in sorted(gts.keys() - preds.keys())],
  )


def evaluate_folders(pred_dir, gt_dir, protocol="pysodmetrics", progress=None):
  """(SaliencyMetrics, problems) for maps in `pred_dir` against masks in `gt_dir`.

  problems = {"unmatched_maps": [paths], "unmatched_gts": [paths],
  "failed": {path: reason}}; unmatched and unreadable files are left out.
  Images are named by their ground truth's file name. UserError if a folder is
  missing or holds no image, or if both are the same folder.
  """
  if os.path.realpath(pred_dir) == os.path.realpath(gt_dir):
    raise UserError(
      f"--pred_dir and --gt_dir are the same folder ({pred_dir}): every map "
      f"would be scored against itself"
    )
  try:
    pairs, unmatched_maps, unmatched_gts = match_by_stem(pred_dir, gt_dir)
  except ValueError as error:  # a folder missing, empty, or with two files of one stem
    raise UserError(str(error)) from error
  metrics = metrics_lib.SaliencyMetrics(protocol)
  failed = {}
  for _, pred_path, gt_path in tqdm.tqdm(
    pairs, unit="img", desc=progress, disable=progress is None
  ):
    pred, gt = _read_label(pred_path, failed), _read_label(gt_path, failed)
    if pred is not None and gt is not None:
      metrics.update(resize_map(pred, gt.shape), gt, os.path.basename(gt_path))
  return metrics, {
    "unmatched_maps": unmatched_maps,
    "unmatched_gts": unmatched_gts,
    "failed": failed,
  }


def _read_label(path, failed):
  try:
    return decode.decode_label(path)[..., 0]
  except decode.DecodeError as error:
    failed[path] = str(error)
    return None
