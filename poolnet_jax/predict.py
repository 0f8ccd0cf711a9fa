"""Saliency (or edge) maps for any images: files, folders and globs.

    python -m poolnet_jax.predict --checkpoint converted/ photos/ 'extra/*.jpg' --output maps/
    python -m poolnet_jax.predict --checkpoint final.pth photo.jpg --output maps/ --cutout --overlay
    python -m poolnet_jax.predict --checkpoint edge_model/ photos/ --output edges/ --task edge

Writes `<stem>.png`, an 8-bit map at the image's own size (images found in a
folder keep their sub-folder), with `--cutout` `<stem>_cutout.png` (RGBA, the
map as alpha) and with `--overlay` `<stem>_overlay.png`. `--task edge` (edge
models) runs the original's edge test: scales 0.5, 1, 1.5 and 2, at each the
mean of the fused and first three side outputs, min-max normalised, resized
back and averaged; written as 255 * (1 - edge), dark edges on white.

Images below the network's minimum size are upsampled to it (aspect kept) and
the map is resized back, which the log says. Same-size images run as one
batch; each input shape compiles once per process and JAX's persistent
compilation cache is on (`runtime.enable_compilation_cache`). Unreadable images
are reported and skipped; the exit code is 1 if any input failed.

In Python:

    predictor = Predictor(model, variables)
    maps = predictor.saliency(rgb_batch)   # (N, H, W) in [0, 1] for uint8 (N, H, W, 3)
"""

import collections
import functools
import glob
import logging
import os
from pathlib import Path
import sys

from absl import app, flags
import jax
import numpy as np
from PIL import Image
import tqdm

from poolnet_jax import image as image_lib
from poolnet_jax import pretrained, runtime
from poolnet_jax.data import decode

EDGE_SCALES = (0.5, 1.0, 1.5, 2.0)
EDGE_EPSILON = 1e-8  # the original's, in its min-max normalisation
HELP_FLAGS = ("-h", "-?", "--help", "--helpshort", "--helpfull")

FLAGS = flags.FlagValues()  # private, so predict and evaluate can share one process
flags.DEFINE_string("checkpoint", None, "Converted or trained model directory, or an original "
                    ".pth file.", flag_values=FLAGS)
flags.DEFINE_string("output", "predictions", "Folder for the maps.", flag_values=FLAGS)
flags.DEFINE_enum("task", "saliency", ["saliency", "edge"],
                  "edge: the original's multi-scale edge test (edge models only).",
                  flag_values=FLAGS)
flags.DEFINE_bool("cutout", False, "Also write the image cut out by its map (RGBA).",
                  flag_values=FLAGS)
flags.DEFINE_bool("overlay", False, "Also write the map laid over the image in red.",
                  flag_values=FLAGS)
flags.DEFINE_integer("batch_size", 4, "Images of one size run together.", lower_bound=1,
                     flag_values=FLAGS)


# Resizing (numpy; bilinear along each spatial axis, no antialiasing).

@functools.lru_cache(maxsize=None)
def _taps(in_size, out_size, align_corners, scale):
  """(lo, hi, frac): output i = (1 - frac) * x[lo] + frac * x[hi] along one axis."""
  out = np.arange(out_size, dtype=np.float64)
  if align_corners:
    src = out * ((in_size - 1) / (out_size - 1) if out_size > 1 else 0.0)
  else:  # OpenCV INTER_LINEAR: half-pixel centres, clamped at the borders
    src = np.maximum((out + 0.5) * (1.0 / scale if scale else in_size / out_size) - 0.5, 0.0)
  lo = np.minimum(np.floor(src).astype(np.int64), in_size - 1)
  hi = np.minimum(lo + 1, in_size - 1)
  frac = np.where(hi > lo, src - lo, 0.0).astype(np.float32)
  return lo, hi, frac


def resize(array, size, align_corners=True, scale=None):
  """Bilinear resize of (H, W), (H, W, C) or (N, H, W, C) to `size` = (H', W'), float32.

  align_corners=True is PyTorch's rule, the one of the network and of training.
  False is OpenCV's `INTER_LINEAR` (the original's test code and the SOD
  toolkits); `scale` is then cv2's fx = fy, which sets the sampling step.
  """
  array = np.asarray(array, np.float32)
  axis = 1 if array.ndim == 4 else 0
  for offset, out_size in enumerate(size):
    in_size = array.shape[axis + offset]
    if in_size == out_size and scale is None:
      continue
    lo, hi, frac = _taps(in_size, int(out_size), align_corners, scale)
    shape = [1] * array.ndim
    shape[axis + offset] = -1
    start = np.take(array, lo, axis=axis + offset)
    array = start + (np.take(array, hi, axis=axis + offset) - start) * frac.reshape(shape)
  return array


def _sigmoid(logits):
  with np.errstate(over="ignore"):
    return image_lib.saliency_map(np.asarray(logits))


# The model.

@functools.lru_cache(maxsize=None)
def compiled_apply(model):
  """`jax.jit(model.apply)` shared by all users of an equal model: one compile per shape."""
  return jax.jit(model.apply, static_argnames=("mode",))


class Predictor:
  """Runs a PoolNet on uint8 RGB images of any size; maps come back at the images' size."""

  def __init__(self, model, variables):
    self.model = model
    self.variables = jax.device_put(variables)
    self.min_size = model.min_input_size()
    self._apply = compiled_apply(model)
    self._told = set()

  def run_size(self, size):
    """(H, W) the network runs at for an image of `size`: itself, or upsampled to the minimum."""
    if min(size) >= self.min_size:
      return tuple(size)
    scale = self.min_size / min(size)
    return tuple(max(self.min_size, round(n * scale)) for n in size)

  def _probabilities(self, x, mode="saliency", size=None):
    """sigmoid of each output for preprocessed (N, h, w, 3): list of (N, h, w) float64."""
    h, w = x.shape[1:3]
    run = tuple(size) if size else self.run_size((h, w))
    if min(run) < self.min_size:
      raise ValueError(f"inference size {run[0]}x{run[1]} is below the network's minimum "
                       f"{self.min_size}")
    if not size and run != (h, w) and (h, w) not in self._told:
      self._told.add((h, w))
      logging.warning("images of %dx%d are below the network's minimum size %d: run at %dx%d, "
                      "maps resized back", h, w, self.min_size, *run)
    if run != (h, w):
      x = resize(x, run)
    if mode == "saliency":
      outputs = [self._apply(self.variables, x)]
    else:
      fused, sides = self._apply(self.variables, x, mode=mode)
      outputs = [fused, *sides]
    maps = [_sigmoid(np.asarray(o)[..., 0]) for o in outputs]
    return maps if run == (h, w) else [np.clip(resize(m[..., None], (h, w))[..., 0], 0.0, 1.0)
                                       for m in maps]

  def saliency(self, images, size=None):
    """Saliency maps in [0, 1], (N, H, W), for same-size uint8 RGB images (N, H, W, 3).

    `size` = (H', W') runs the network at that size instead, maps resized back.
    """
    images = np.asarray(images)
    return self._probabilities(image_lib.preprocess(images), size=size)[0]

  def edges(self, image):
    """The original's multi-scale edge test for one uint8 RGB image: edge map (H, W) in [0, 1]."""
    if not self.model.edge:
      raise ValueError("edge maps need an edge model (resnet50_edge or vgg16_edge)")
    h, w = image.shape[:2]
    x = image_lib.preprocess(np.asarray(image))
    total = np.zeros((h, w), np.float64)
    for scale in EDGE_SCALES:
      size = (max(1, round(h * scale)), max(1, round(w * scale)))
      scaled = resize(x, size, align_corners=False, scale=scale)
      fused, *sides = self._probabilities(scaled[None], mode="edge")
      edge = (fused[0] + sides[0][0] + sides[1][0] + sides[2][0]) / 4.0
      edge = (edge - edge.min() + EDGE_EPSILON) / (edge.max() - edge.min() + EDGE_EPSILON)
      total += resize(edge, (h, w), align_corners=False)
    return np.clip(total / len(EDGE_SCALES), 0.0, 1.0)


# Files.

def expand_inputs(inputs, exclude=None):
  """Files, folders (their images, recursively) and globs -> ([(path, output stem)], unmatched).

  The output stem is the file's stem, with its sub-folder for images found in a
  folder. Files under `exclude` (the output folder) are left out of folders.
  """
  exclude = Path(exclude).resolve() if exclude else None
  found, unmatched = [], []
  for item in inputs:
    if os.path.isdir(item):
      root = Path(item)
      paths = sorted(p for p in root.rglob("*") if p.is_file()
                     and p.suffix.lower() in decode.IMAGE_EXTENSIONS and not p.name.startswith(".")
                     and not (exclude and exclude in p.resolve().parents))
      found.extend((p, p.relative_to(root).with_suffix("")) for p in paths)
    else:
      paths = [Path(item)] if os.path.isfile(item) else sorted(
          Path(p) for p in glob.glob(item, recursive=True) if os.path.isfile(p))
      found.extend((p, Path(p.stem)) for p in paths)
    if not paths:
      unmatched.append(item)
  return list(dict(found).items()), unmatched


def write_outputs(target, image, saliency, cutout=False, overlay=False):
  """Writes the 8-bit map at `target` (a .png path) and the optional cutout and overlay."""
  target = Path(target)
  target.parent.mkdir(parents=True, exist_ok=True)
  levels = image_lib.to_uint8_map(saliency)
  Image.fromarray(levels).save(target)
  if cutout:
    Image.fromarray(np.dstack([image, levels])).save(target.with_name(target.stem + "_cutout.png"))
  if overlay:
    alpha = np.asarray(saliency, np.float64)[..., None] * 0.6
    tint = np.array([255, 40, 40], np.float64)
    mixed = (image * (1 - alpha) + tint * alpha).astype(np.uint8)
    Image.fromarray(mixed).save(target.with_name(target.stem + "_overlay.png"))


def _size_batches(items, batch_size, failed):
  """(batch, pad) for same-size (path, stem) items; files with an unreadable header go to `failed`.

  `pad` is true for sizes with at least one full batch: a short batch (the last,
  or one with undecodable files) padded to full size reuses that compiled shape.
  """
  groups = collections.defaultdict(list)
  for path, stem in items:
    try:
      groups[decode.image_size(path)].append((path, stem))
    except decode.DecodeError as error:
      failed[path] = str(error)
  for group in groups.values():
    for start in range(0, len(group), batch_size):
      yield group[start:start + batch_size], len(group) >= batch_size


def predict_paths(predictor, items, output, task="saliency", batch_size=4, cutout=False,
                  overlay=False):
  """Writes a map for each (path, output stem) under `output`.

  Returns {path: reason} of the inputs that failed.
  """
  failed, written = {}, {}
  batch_size = 1 if task == "edge" else batch_size
  with tqdm.tqdm(total=len(items), unit="img", desc=task) as bar:
    for batch, pad in _size_batches(items, batch_size, failed):
      images, kept = [], []
      for path, stem in batch:
        target = Path(output) / stem.with_name(stem.name + ".png")
        if target in written:
          failed[path] = f"its map {target} would overwrite the map of {written[target]}"
          continue
        try:
          images.append(decode.decode_image(path))
        except decode.DecodeError as error:
          failed[path] = str(error)
          continue
        kept.append((path, target))
        written[target] = path
      if images:
        maps = ([1.0 - predictor.edges(images[0])] if task == "edge"
                else _saliency(predictor, np.stack(images), batch_size if pad else 0))
        for (path, target), image, saliency in zip(kept, images, maps):
          write_outputs(target, image, saliency, cutout, overlay)
      bar.update(len(batch))
  return failed


def _saliency(predictor, images, pad_to=0):
  """Saliency maps of a batch, run padded (repeating its last image) to `pad_to` images."""
  count = len(images)
  if count < pad_to:
    images = np.concatenate([images, np.repeat(images[-1:], pad_to - count, axis=0)])
  return predictor.saliency(images)[:count]


# Command line.

def parse_flags(flag_values, argv):
  """Parses `flag_values` afresh from argv = [program, ...]; returns the positional arguments."""
  for name in list(flag_values):
    flag_values[name].unparse()  # back to its default
  return flag_values(list(argv))[1:]


def run_main(main, flag_values, doc):
  """app.run for a module with private flags: absl's own flags (--verbosity...) also work."""
  def parser(argv):
    if any(arg in HELP_FLAGS for arg in argv[1:]):
      print(doc.strip() + "\n\nFlags:\n" + flag_values.get_help())
      sys.exit(0)
    return [argv[0]] + flags.FLAGS(argv, known_only=True)[1:]
  app.run(main, flags_parser=parser)


def main(argv):
  """`python -m poolnet_jax.predict`; argv = [program, flags and inputs...].

  Returns the exit code: 0, 1 if an input failed, 2 for bad flags.
  """
  try:
    inputs = parse_flags(FLAGS, argv)
    if not FLAGS.checkpoint:
      raise flags.ValidationError("--checkpoint is required")
    if FLAGS.task == "edge" and (FLAGS.cutout or FLAGS.overlay):
      raise flags.ValidationError("--cutout and --overlay apply to saliency maps, not --task edge")
  except flags.Error as error:
    print(f"error: {error}", file=sys.stderr)
    return 2
  items, unmatched = expand_inputs(inputs, exclude=FLAGS.output)
  for item in unmatched:
    print(f"warning: {item} matches no image file", file=sys.stderr)
  if not items:
    print(f"error: no images found in {' '.join(inputs) or '(no inputs given)'}", file=sys.stderr)
    return 1
  runtime.apply_xla_defaults()
  runtime.enable_compilation_cache()
  model, variables = pretrained.load_pretrained(FLAGS.checkpoint)
  if FLAGS.task == "edge" and not model.edge:
    print(f"error: {FLAGS.checkpoint} is a saliency-only model; --task edge needs an edge model",
          file=sys.stderr)
    return 1
  failed = predict_paths(Predictor(model, variables), items, FLAGS.output, FLAGS.task,
                         FLAGS.batch_size, FLAGS.cutout, FLAGS.overlay)
  for path, reason in failed.items():
    print(f"failed: {path}: {reason}", file=sys.stderr)
  print(f"{len(items) - len(failed)} of {len(items)} images written to {FLAGS.output}"
        + (f"; {len(failed)} failed" if failed else "")
        + (f"; {len(unmatched)} inputs matched nothing" if unmatched else ""))
  return 1 if failed or unmatched else 0


if __name__ == "__main__":
  run_main(main, FLAGS, __doc__)
