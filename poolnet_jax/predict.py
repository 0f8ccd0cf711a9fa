"""Saliency (or edge) maps for any images: files, folders and globs.

    python -m poolnet_jax.predict --checkpoint converted/ photos/ extra/*.jpg --output maps/

Writes `<stem>.png`, an 8-bit map at the image's own size, and with `--cutout`
`<stem>_cutout.png` (RGBA, the map as alpha), with `--overlay` `<stem>_overlay.png`.
Unreadable images are reported and skipped; the exit code is 1 if any failed.
"""

import collections
import glob
import logging
import os
import sys
from pathlib import Path

from absl import app, flags
import jax
import numpy as np
from PIL import Image
import tqdm

from poolnet_jax import image as image_lib
from poolnet_jax import pretrained, runtime

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm")
EDGE_SCALES = (0.5, 1.0, 1.5, 2.0)

flags.DEFINE_string("checkpoint", None, "Converted or trained model directory, or an original .pth.")
flags.DEFINE_string("output", "predictions", "Folder for the maps.")
flags.DEFINE_enum("task", "saliency", ["saliency", "edge"], "edge: the original's multi-scale edge test (edge models).")
flags.DEFINE_bool("cutout", False, "Also write the image cut out by its map (RGBA).")
flags.DEFINE_bool("overlay", False, "Also write the map laid over the image.")
flags.DEFINE_integer("batch_size", 4, "Images of one size run together.")
FLAGS = flags.FLAGS


def expand_inputs(inputs):
  """Files, folders (their images, sorted) and globs -> (paths, inputs matching nothing)."""
  paths, unmatched = [], []
  for item in inputs:
    if os.path.isdir(item):
      found = sorted(p for p in Path(item).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    elif os.path.exists(item):
      found = [Path(item)]
    else:
      found = sorted(Path(p) for p in glob.glob(item, recursive=True) if os.path.isfile(p))
    if found:
      paths.extend(found)
    else:
      unmatched.append(item)
  return list(dict.fromkeys(paths)), unmatched


def read_rgb(path):
  """uint8 RGB array of an image file (grey, palette and RGBA are converted)."""
  with Image.open(path) as img:
    img.load()
    if img.mode in ("I;16", "I;16B", "I"):
      img = Image.fromarray((np.asarray(img, np.float64) / 257).astype(np.uint8))
    return np.asarray(img.convert("RGB"))


class Predictor:
  """Runs a model at native size; one compiled function per input shape (jit's cache)."""

  def __init__(self, model, variables):
    self.model, self.variables = model, variables
    self.min_size = model.min_input_size()
    self._saliency = jax.jit(lambda v, x: jax.nn.sigmoid(model.apply(v, x)))
    if model.edge:
      self._edge = jax.jit(lambda v, x: _edge_average(model.apply(v, x, mode="edge")))

  def _run(self, fn, images):
    """float maps (N, H, W) for same-size uint8 RGB images, upsampling small ones."""
    h, w = images.shape[1:3]
    scale = max(1.0, self.min_size / min(h, w))
    if scale > 1.0:
      size = (int(np.ceil(h * scale)), int(np.ceil(w * scale)))
      logging.info("image %dx%d is below the network's minimum %d: run at %dx%d, map resized back",
                   h, w, self.min_size, *size)
      images = np.stack([_resize(img, size) for img in images])
    maps = np.asarray(fn(self.variables, image_lib.preprocess(images)))[..., 0]
    return np.stack([_resize_map(m, (h, w)) for m in maps]) if scale > 1.0 else maps

  def saliency(self, images):
    return self._run(self._saliency, images)

  def edges(self, image):
    """The original's edge test: scales 0.5-2, average, min-max, 1 - edge (dark edges)."""
    h, w = image.shape[:2]
    total = np.zeros((h, w), np.float64)
    for scale in EDGE_SCALES:
      size = (max(1, round(h * scale)), max(1, round(w * scale)))
      total += _resize_map(self._run(self._edge, _resize(image, size)[None])[0], (h, w))
    total /= len(EDGE_SCALES)
    total = (total - total.min()) / max(total.max() - total.min(), 1e-12)
    return 1.0 - total


def _edge_average(outputs):
  fused, sides = outputs
  return sum(jax.nn.sigmoid(o) for o in [fused, *sides[:3]]) / 4.0


def _resize(image, size):
  return np.asarray(Image.fromarray(image).resize((size[1], size[0]), Image.BILINEAR))


def _resize_map(saliency, size):
  img = Image.fromarray(np.asarray(saliency, np.float32), mode="F")
  return np.asarray(img.resize((size[1], size[0]), Image.BILINEAR))


def write_outputs(path, image, saliency, output, cutout=False, overlay=False):
  """Writes the 8-bit map and the optional cutout and overlay; returns the map's path."""
  stem = Path(path).stem
  levels = image_lib.to_uint8_map(saliency)
  target = Path(output) / f"{stem}.png"
  Image.fromarray(levels).save(target)
  if cutout:
    Image.fromarray(np.dstack([image, levels])).save(Path(output) / f"{stem}_cutout.png")
  if overlay:
    alpha = saliency[..., None] * 0.6
    tint = np.array([255, 40, 40], np.float64)
    mixed = (image * (1 - alpha) + tint * alpha).astype(np.uint8)
    Image.fromarray(mixed).save(Path(output) / f"{stem}_overlay.png")
  return target


def _size_groups(paths, batch_size, failed):
  """Same-size batches of paths; files whose header cannot be read go to `failed`."""
  groups = collections.defaultdict(list)
  for path in paths:
    try:
      with Image.open(path) as img:
        groups[img.size].append(path)
    except Exception as error:  # pylint: disable=broad-except
      failed[path] = f"cannot read image: {error}"
  for group in groups.values():
    for i in range(0, len(group), batch_size):
      yield group[i:i + batch_size]


def predict_paths(predictor, paths, output, task="saliency", batch_size=4, cutout=False,
                  overlay=False):
  """Writes maps for `paths`; returns {path: reason} of the images that failed."""
  os.makedirs(output, exist_ok=True)
  failed = {}
  with tqdm.tqdm(total=len(paths), unit="img", desc="predict") as bar:
    for batch in _size_groups(paths, 1 if task == "edge" else batch_size, failed):
      images, kept = [], []
      for path in batch:
        try:
          images.append(read_rgb(path))
          kept.append(path)
        except Exception as error:  # pylint: disable=broad-except
          failed[path] = f"cannot decode image: {error}"
      if images:
        stacked = np.stack(images)
        maps = [predictor.edges(stacked[0])] if task == "edge" else predictor.saliency(stacked)
        for path, img, saliency in zip(kept, images, maps):
          write_outputs(path, img, saliency, output, cutout, overlay)
      bar.update(len(batch))
  return failed


def main(argv):
  if FLAGS.checkpoint is None:
    raise app.UsageError("--checkpoint is required")
  runtime.enable_compilation_cache()
  paths, unmatched = expand_inputs(argv[1:])
  if not paths:
    print(f"error: no images found in {' '.join(argv[1:]) or '(no inputs given)'}", file=sys.stderr)
    return 1
  model, variables = pretrained.load_pretrained(FLAGS.checkpoint)
  if FLAGS.task == "edge" and not model.edge:
    print(f"error: {FLAGS.checkpoint} is a saliency-only model; --task edge needs an edge model",
          file=sys.stderr)
    return 1
  failed = predict_paths(Predictor(model, variables), paths, FLAGS.output, FLAGS.task,
                         FLAGS.batch_size, FLAGS.cutout, FLAGS.overlay)
  for item in unmatched:
    print(f"warning: {item} matches no file", file=sys.stderr)
  for path, reason in failed.items():
    print(f"failed: {path}: {reason}", file=sys.stderr)
  print(f"{len(paths) - len(failed)} of {len(paths)} images written to {FLAGS.output}")
  return 1 if failed or unmatched else 0


if __name__ == "__main__":
  app.run(main)
