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

Images below the network's minimum size are upsampled to it (aspect kept), and
images whose longest side exceeds `--max_size` (default 1024; 0: no limit) are
scaled down to it (antialiased, aspect kept); either way the map is resized
back to the image's size and the log says so. Same-size images run as one
batch (at most about max_size^2 pixels per batch); each input shape compiles
once per process and JAX's persistent compilation cache is on
(`runtime.enable_compilation_cache`).

Nothing is overwritten that is not predict's own: before any work, every output
path is planned, and outputs that would land on an input file or on each other
(two inputs with the same stem, a map named like another input's cutout, ...)
are refused with one error listing them (exit 2, nothing written). Unreadable
images and images that cannot run (out of memory included) are reported and
skipped, the others finish; the exit code is then 1. Mistakes (a missing
checkpoint, a training workdir as checkpoint, an output folder that is a file
or read-only) print one `error:` line and exit 2; `--verbose` adds the traceback.

In Python:

    predictor = Predictor(model, variables, max_size=1024)
    maps = predictor.saliency(rgb_batch)   # (N, H, W) in [0, 1] for uint8 (N, H, W, 3)
"""

import collections
import functools
import logging
import sys

from absl import flags
import jax
import numpy as np
from PIL import Image
import tqdm

from poolnet_jax import cli
from poolnet_jax import image as image_lib
from poolnet_jax import pretrained, runtime
from poolnet_jax.data import decode
from poolnet_jax.predict_io import check_outputs, expand_inputs, output_paths, write_outputs

EDGE_SCALES = (0.5, 1.0, 1.5, 2.0)
EDGE_EPSILON = 1e-8  # the original's, in its min-max normalisation
DEFAULT_MAX_SIZE = 1024  # full ResNet-50, 6000x4000 photo: see README (Predict)
RUN_ERRORS = (jax.errors.JaxRuntimeError, MemoryError)  # XLA's RESOURCE_EXHAUSTED included

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
flags.DEFINE_integer("max_size", DEFAULT_MAX_SIZE, "Longest side the network sees: larger "
                     "images are scaled down (aspect kept) and their maps resized back; 0: no "
                     "limit. For --task edge, the scale-1 image.", lower_bound=0,
                     flag_values=FLAGS)
cli.define_verbose(FLAGS)


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
  """Runs a PoolNet on uint8 RGB images of any size; maps come back at the images' size.

  `max_size` > 0: images whose longest side exceeds it run scaled down to it.
  """

  def __init__(self, model, variables, max_size=0):
    self.model = model
    self.variables = jax.device_put(variables)
    self.min_size = model.min_input_size()
    self.max_size = max_size
    self._apply = compiled_apply(model)
    self._told = set()

  def run_size(self, size):
    """(H, W) the network runs at for an image of `size`: itself, scaled down to `max_size`
    on its longest side, or scaled up to the minimum on its shortest (which wins)."""
    scale = 1.0
    if self.max_size and max(size) > self.max_size:
      scale = self.max_size / max(size)
    if min(size) * scale < self.min_size:
      scale = self.min_size / min(size)
    if scale == 1.0:
      return tuple(size)
    return tuple(max(self.min_size, round(n * scale)) for n in size)

  def _upsampled_size(self, size):
    if min(size) >= self.min_size:
      return tuple(size)
    scale = self.min_size / min(size)
    return tuple(max(self.min_size, round(n * scale)) for n in size)

  def _tell(self, size, run, why):
    if (size, run) not in self._told:
      self._told.add((size, run))
      logging.warning("images of %dx%d %s: run at %dx%d, maps resized back", *size, why, *run)

  def _probabilities(self, x, mode="saliency", size=None):
    """sigmoid of each output for preprocessed (N, h, w, 3): list of (N, h, w) float64."""
    h, w = x.shape[1:3]
    run = tuple(size) if size else self._upsampled_size((h, w))
    if min(run) < self.min_size:
      raise ValueError(f"inference size {run[0]}x{run[1]} is below the network's minimum "
                       f"{self.min_size}")
    if not size and run != (h, w):
      self._tell((h, w), run, f"are below the network's minimum size {self.min_size}")
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

  def _scaled_down(self, images):
    """uint8 (N, H, W, 3) scaled down (antialiased) to at most `max_size`, or None if within."""
    size = images.shape[1:3]
    if not self.max_size or max(size) <= self.max_size:
      return None
    run = self.run_size(size)
    self._tell(size, run, f"are larger than max_size {self.max_size}")
    return np.stack([np.asarray(Image.fromarray(image).resize(run[::-1], Image.BILINEAR))
                     for image in images])

  def saliency(self, images, size=None):
    """Saliency maps in [0, 1], (N, H, W), for same-size uint8 RGB images (N, H, W, 3).

    `size` = (H', W') runs the network at that size instead, maps resized back.
    """
    images = np.asarray(images)
    small = None if size else self._scaled_down(images)
    if small is None:
      return self._probabilities(image_lib.preprocess(images), size=size)[0]
    maps = self._probabilities(image_lib.preprocess(small))[0]
    return np.clip(resize(maps[..., None], images.shape[1:3])[..., 0], 0.0, 1.0)

  def edges(self, image):
    """The original's multi-scale edge test for one uint8 RGB image: edge map (H, W) in [0, 1].

    With `max_size`, a larger image is scaled down to it first and its map resized back.
    """
    if not self.model.edge:
      raise ValueError("edge maps need an edge model (resnet50_edge or vgg16_edge)")
    image = np.asarray(image)
    small = self._scaled_down(image[None])
    if small is not None:
      edge = self.edges(small[0])
      return np.clip(resize(edge, image.shape[:2], align_corners=False), 0.0, 1.0)
    h, w = image.shape[:2]
    x = image_lib.preprocess(image)
    total = np.zeros((h, w), np.float64)
    for scale in EDGE_SCALES:
      size = (max(1, round(h * scale)), max(1, round(w * scale)))
      scaled = resize(x, size, align_corners=False, scale=scale)
      fused, *sides = self._probabilities(scaled[None], mode="edge")
      edge = (fused[0] + sides[0][0] + sides[1][0] + sides[2][0]) / 4.0
      edge = (edge - edge.min() + EDGE_EPSILON) / (edge.max() - edge.min() + EDGE_EPSILON)
      total += resize(edge, (h, w), align_corners=False)
    return np.clip(total / len(EDGE_SCALES), 0.0, 1.0)


# Running files.

def _size_batches(items, batch_size, failed, limit=None):
  """(batch, pad) for same-size (path, stem) items; files with an unreadable header go to `failed`.

  `limit(size)`, if given, caps the batch size of images of `size`. `pad` is
  true for sizes with at least one full batch: a short batch (the last, or one
  with undecodable files) padded to full size reuses that compiled shape.
  """
  groups = collections.defaultdict(list)
  for path, stem in items:
    try:
      groups[decode.image_size(path)].append((path, stem))
    except decode.DecodeError as error:
      failed[path] = str(error)
  for size, group in groups.items():
    size_batch = min(batch_size, limit(size)) if limit else batch_size
    for start in range(0, len(group), size_batch):
      yield group[start:start + size_batch], len(group) >= size_batch


def batch_limit(predictor):
  """Images of a size per batch such that a batch runs at most about max_size^2 pixels."""
  if not predictor.max_size:
    return None
  def limit(size):
    height, width = predictor.run_size(size)
    return max(1, predictor.max_size ** 2 // (height * width))
  return limit


def run_failure(error, size, predictor):
  """Why an image of `size` could not run, for the report."""
  text = str(error)
  run = predictor.run_size(size)
  if isinstance(error, MemoryError) or "RESOURCE_EXHAUSTED" in text:
    return (f"out of memory at {size[0]}x{size[1]} (run at {run[0]}x{run[1]}): a smaller "
            f"--max_size would fit")
  return f"cannot run at {run[0]}x{run[1]}: {text.strip().splitlines()[0] if text else error!r}"


def predict_paths(predictor, items, output, task="saliency", batch_size=4, cutout=False,
                  overlay=False):
  """Writes a map for each (path, output stem) under `output`.

  Call check_outputs first. An image that cannot run (out of memory, say) or
  whose outputs cannot be written is skipped; returns {path: reason} of the
  inputs that failed.
  """
  failed = {}
  batch_size = 1 if task == "edge" else batch_size
  with tqdm.tqdm(total=len(items), unit="img", desc=task) as bar:
    for batch, pad in _size_batches(items, batch_size, failed, batch_limit(predictor)):
      images, kept = [], []
      for path, stem in batch:
        try:
          images.append(decode.decode_image(path))
        except decode.DecodeError as error:
          failed[path] = str(error)
          continue
        kept.append((path, output_paths(stem, output)[0]))
      for (path, target), image, saliency in _run(predictor, task, images, kept, pad, failed):
        try:
          write_outputs(target, image, saliency, cutout, overlay)
        except OSError as error:
          failed[path] = f"cannot write {error.filename or target}: {error.strerror or error}"
      bar.update(len(batch))
  return failed


def _run(predictor, task, images, kept, pad, failed):
  """[(item, image, map)] of a same-size batch; on a failure to run, one image at a time, and
  those that still fail go to `failed`."""
  if not images:
    return []
  try:
    return list(zip(kept, images, _maps(predictor, task, images, len(images) if pad else 0)))
  except RUN_ERRORS as error:
    if len(images) == 1:
      failed[kept[0][0]] = run_failure(error, images[0].shape[:2], predictor)
      return []
  done = []
  for item, image in zip(kept, images):
    done.extend(_run(predictor, task, [image], [item], False, failed))
  return done


def _maps(predictor, task, images, pad_to):
  if task == "edge":
    return [1.0 - predictor.edges(images[0])]
  return _saliency(predictor, np.stack(images), pad_to)


def _saliency(predictor, images, pad_to=0):
  """Saliency maps of a batch, run padded (repeating its last image) to `pad_to` images."""
  count = len(images)
  if count < pad_to:
    images = np.concatenate([images, np.repeat(images[-1:], pad_to - count, axis=0)])
  return predictor.saliency(images)[:count]


# Command line.

@cli.reports_user_errors(FLAGS)
def main(argv):
  """`python -m poolnet_jax.predict`; argv = [program, flags and inputs...].

  Returns the exit code: 0, 1 if an input failed, 2 for a mistake (nothing written).
  """
  inputs = cli.parse_flags(FLAGS, argv)
  if not FLAGS.checkpoint:
    raise flags.ValidationError("--checkpoint is required")
  if FLAGS.task == "edge" and (FLAGS.cutout or FLAGS.overlay):
    raise flags.ValidationError("--cutout and --overlay apply to saliency maps, not --task edge")
  cli.check_writable_folder(FLAGS.output, "--output")
  items, unmatched = expand_inputs(inputs, exclude=FLAGS.output)
  for item in unmatched:
    print(f"warning: {item} matches no image file", file=sys.stderr)
  if not items:
    raise cli.UserError(f"no images found in {' '.join(inputs) or '(no inputs given)'}")
  check_outputs(items, FLAGS.output, FLAGS.cutout, FLAGS.overlay)
  runtime.apply_xla_defaults()
  runtime.enable_compilation_cache()
  model, variables = pretrained.load_pretrained(FLAGS.checkpoint)
  if FLAGS.task == "edge" and not model.edge:
    raise cli.UserError(f"{FLAGS.checkpoint} is a saliency-only model; --task edge needs an "
                        f"edge model")
  failed = predict_paths(Predictor(model, variables, FLAGS.max_size), items, FLAGS.output,
                         FLAGS.task, FLAGS.batch_size, FLAGS.cutout, FLAGS.overlay)
  for path, reason in failed.items():
    print(f"failed: {path}: {reason}", file=sys.stderr)
  print(f"{len(items) - len(failed)} of {len(items)} images written to {FLAGS.output}"
        + (f"; {len(failed)} failed" if failed else "")
        + (f"; {len(unmatched)} inputs matched nothing" if unmatched else ""))
  return 1 if failed or unmatched else 0


if __name__ == "__main__":
  cli.run_main(main, FLAGS, __doc__)
