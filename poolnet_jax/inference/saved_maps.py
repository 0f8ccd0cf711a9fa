"""Saved maps scored against ground truth: files matched by stem, maps resized like the toolkits.

    metrics, problems = evaluate_folders("maps/", "ECSSD/ground_truth_mask")

A map of its ground truth's size is scored as it is. A map of another size with
the same aspect ratio (`same_aspect`: each side within one pixel of the ground
truth's side times one common factor, as saving at a smaller scale rounds it) is
resized to the ground truth's size bilinearly by OpenCV's INTER_LINEAR rule, as
the SOD toolkits do (`resize_map`), and listed in problems["resized"]. A map of
another aspect ratio (turned by 90 degrees, cropped, padded) is refused: UserError
naming the files before anything is scored, or, with `skip_mismatched`, left out
and listed in problems["mismatched"]. Sizes are read upright, by each file's EXIF
orientation tag (`poolnet_jax.data.decode`).
"""

import os

import numpy as np
import tqdm

from poolnet_jax.data import decode, files
from poolnet_jax.errors import UserError
from poolnet_jax.imaging import resize as resize_lib
from poolnet_jax.inference import metrics as metrics_lib


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


def same_aspect(map_hw, gt_hw, slack=1.0):
  """Whether a map of (H, W) `map_hw` is the (H, W) `gt_hw` scaled by one factor, up to
  rounding: some factor puts both sides of the ground truth within `slack` pixels of the map's."""
  (mh, mw), (gh, gw) = map_hw, gt_hw
  return max((mh - slack) / gh, (mw - slack) / gw) <= min((mh + slack) / gh, (mw + slack) / gw)


def size_list(sizes, listed=20):
  """'a.png (map 25x20, ground truth 50x40), ... and N more' for {map path: (map_hw, gt_hw)}."""
  items = [
    f"{os.path.basename(path)} (map {m[1]}x{m[0]}, ground truth {g[1]}x{g[0]})"
    for path, (m, g) in list(sizes.items())[:listed]
  ]
  more = f" and {len(sizes) - listed} more" if len(sizes) > listed else ""
  return ", ".join(items) + more


def evaluate_folders(
  pred_dir, gt_dir, protocol="pysodmetrics", progress=None, skip_mismatched=False
):
  """(SaliencyMetrics, problems) for maps in `pred_dir` against masks in `gt_dir`.

  problems = {"unmatched_maps": [paths], "unmatched_gts": [paths],
  "failed": {path: reason}, "resized": {map path: (map (H, W), gt (H, W))},
  "mismatched": {the same, for maps of another aspect ratio}}; unmatched,
  unreadable and (with `skip_mismatched`) mismatched files are left out.
  Images are named by their ground truth's file name. UserError if a folder is
  missing or holds no image, if both are the same folder, or (without
  `skip_mismatched`) if a map's aspect ratio differs from its ground truth's.
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
  failed, resized, mismatched = {}, {}, {}
  scored = []
  for _, pred_path, gt_path in pairs:  # sizes from the headers: refusals before any work
    map_hw, gt_hw = _read_size(pred_path, failed), _read_size(gt_path, failed)
    if map_hw is None or gt_hw is None:
      continue
    if map_hw != gt_hw:
      (resized if same_aspect(map_hw, gt_hw) else mismatched)[pred_path] = (map_hw, gt_hw)
    if pred_path not in mismatched:
      scored.append((pred_path, gt_path))
  if mismatched and not skip_mismatched:
    raise UserError(
      f"{len(mismatched)} maps have another aspect ratio than their ground truth (turned, "
      f"cropped or padded?) and cannot be resized to it: {size_list(mismatched)} (width x "
      f"height); fix them, or --skip_mismatched to score the others"
    )
  metrics = metrics_lib.SaliencyMetrics(protocol)
  for pred_path, gt_path in tqdm.tqdm(scored, unit="img", desc=progress, disable=progress is None):
    pred, gt = _read_label(pred_path, failed), _read_label(gt_path, failed)
    if pred is not None and gt is not None:
      metrics.update(resize_map(pred, gt.shape), gt, os.path.basename(gt_path))
  return metrics, {
    "unmatched_maps": unmatched_maps,
    "unmatched_gts": unmatched_gts,
    "failed": failed,
    "resized": resized,
    "mismatched": mismatched,
  }


def _read_size(path, failed):
  try:
    return decode.image_size(path)
  except decode.DecodeError as error:
    failed[path] = str(error)
    return None


def _read_label(path, failed):
  try:
    return decode.decode_label(path)[..., 0]
  except decode.DecodeError as error:
    failed[path] = str(error)
    return None
