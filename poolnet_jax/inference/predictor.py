"""A PoolNet run on images of any size: the library under predict, evaluate and validation.

    predictor = Predictor(model, variables, max_size=1024, size_multiple=0)
    maps = predictor.saliency(rgb_batch)   # (N, H, W) in [0, 1] for uint8 (N, H, W, 3)
    for path, image, saliency in predict_files(predictor, paths, batch_size=4, failed=failed):
      ...                                  # saliency None if it failed (reason in failed[path])
    metrics = evaluate_model(model, variables, source)  # metrics.SaliencyMetrics

Each image runs at its run size (`resize.native_size`): its own, scaled down
(antialiased) to `max_size` on its longest side, scaled up to the network's
minimum on its shortest, and with `size_multiple` > 0 rounded to multiples of
it (fewer distinct shapes, so fewer compiled programs; 0, exact sizes, is the
paper's protocol); the map is resized back to the image's own size (aligned
corners). Each run shape (batch included) compiles once per process: files are
batched by run size, and a short batch of a run size that has full ones is
padded to the full size. `compilation.summary` counts what was compiled.
"""

import collections
import functools
import logging
from pathlib import Path

import jax
import numpy as np
from PIL import Image
import tqdm

from poolnet_jax.data import decode
from poolnet_jax.imaging import image as image_lib
from poolnet_jax.imaging import resize as resize_lib
from poolnet_jax.inference import metrics as metrics_lib

EDGE_SCALES = (0.5, 1.0, 1.5, 2.0)
EDGE_EPSILON = 1e-8  # the original's, in its min-max normalisation
RUN_ERRORS = (jax.errors.JaxRuntimeError, MemoryError)  # XLA's RESOURCE_EXHAUSTED included


@functools.lru_cache(maxsize=None)
def compiled_apply(model):
  """`jax.jit(model.apply)` shared by all users of an equal model: one compile per shape."""
  return jax.jit(model.apply, static_argnames=("mode",))


def _sigmoid(logits):
  with np.errstate(over="ignore"):
    return image_lib.saliency_map(np.asarray(logits))


class Predictor:
  """Runs a PoolNet on uint8 RGB images of any size; maps come back at the images' size.

  `max_size` > 0: images whose longest side exceeds it run scaled down to it.
  `size_multiple` > 0: run sizes rounded to multiples of it (0: exact sizes, the paper's).
  """

  def __init__(self, model, variables, max_size=0, size_multiple=0):
    self.model = model
    self.variables = jax.device_put(variables)
    self.min_size = model.min_input_size()
    self.max_size, self.size_multiple = max_size, size_multiple
    self._apply = compiled_apply(model)
    self._told = set()

  def run_size(self, size):
    """(H, W) the network runs at for an image of `size` (resize.native_size)."""
    return resize_lib.native_size(size, self.min_size, self.max_size, self.size_multiple)

  def saliency(self, images, size=None):
    """Saliency maps in [0, 1], (N, H, W), for same-size uint8 RGB images (N, H, W, 3).

    `size` = (H', W') runs the network at that size instead, maps resized back.
    """
    return np.stack(self.saliency_maps(list(np.asarray(images)), size=size))

  def saliency_maps(self, images, size=None, pad_to=0):
    """[(H, W) saliency map in [0, 1]] for uint8 RGB images (H, W, 3) of one run size.

    They run as one batch, padded (repeating the last) to `pad_to` images if it
    has fewer, so a short batch reuses a compiled batch size. `size` = (H', W')
    runs them at that size instead (no max_size, no rounding).
    """
    sizes = [tuple(np.shape(image)[:2]) for image in images]
    runs = {tuple(size) if size else self.run_size(s) for s in sizes}
    if len(runs) != 1:
      raise ValueError(f"one batch, one run size: these images run at {sorted(runs)}")
    run = runs.pop()
    if min(run) < self.min_size:
      raise ValueError(
        f"inference size {run[0]}x{run[1]} is below the network's minimum {self.min_size}"
      )
    x = np.stack(
      [self._network_input(np.asarray(image), run, fixed=bool(size)) for image in images]
    )
    count = len(x)
    if count < pad_to:
      x = np.concatenate([x, np.repeat(x[-1:], pad_to - count, axis=0)])
    maps = self._outputs(x)[0][:count]
    return [self._back(m, s) for m, s in zip(maps, sizes)]

  def edges(self, image):
    """The original's multi-scale edge test for one uint8 RGB image: edge map (H, W) in [0, 1].

    Scales 0.5, 1, 1.5 and 2 (OpenCV's resize of the preprocessed image), at
    each the mean of the fused and first three side outputs, min-max
    normalised, resized back and averaged. With `max_size`, a larger image is
    scaled down to it first and its map resized back.
    """
    if not self.model.edge:
      raise ValueError("edge maps need an edge model (resnet50_edge or vgg16_edge)")
    image = np.asarray(image)
    size = image.shape[:2]
    if not (self.max_size and max(size) > self.max_size):
      return self._edges(image)
    run = resize_lib.native_size(size, self.min_size, self.max_size)
    self._tell(size, run, f"are larger than max_size {self.max_size}")
    edge = self._edges(_antialiased(image, run))
    return np.clip(resize_lib.resize(edge, size, align_corners=False), 0.0, 1.0)

  def _edges(self, image):
    h, w = image.shape[:2]
    x = image_lib.preprocess(image)
    total = np.zeros((h, w), np.float64)
    for scale in EDGE_SCALES:
      size = (max(1, round(h * scale)), max(1, round(w * scale)))
      scaled = resize_lib.resize(x, size, align_corners=False, scale=scale)
      run = resize_lib.native_size(size, self.min_size, multiple=self.size_multiple)
      if min(size) < self.min_size:
        self._tell(size, run, f"are below the network's minimum size {self.min_size}")
      scaled = resize_lib.resize(scaled, run) if run != size else scaled
      fused, *sides = [self._back(m[0], size) for m in self._outputs(scaled[None], "edge")]
      edge = (fused + sides[0] + sides[1] + sides[2]) / 4.0
      edge = (edge - edge.min() + EDGE_EPSILON) / (edge.max() - edge.min() + EDGE_EPSILON)
      total += resize_lib.resize(edge, (h, w), align_corners=False)
    return np.clip(total / len(EDGE_SCALES), 0.0, 1.0)

  def _network_input(self, image, run, fixed=False):
    """uint8 RGB (H, W, 3) -> preprocessed float32 (run, 3): scaled down antialiased past
    max_size, otherwise resized with aligned corners (as the network resizes)."""
    size = image.shape[:2]
    if run == size:
      return image_lib.preprocess(image)
    if not fixed and self.max_size and max(size) > self.max_size:
      self._tell(size, run, f"are larger than max_size {self.max_size}")
      return image_lib.preprocess(_antialiased(image, run))
    if not fixed and min(size) < self.min_size:
      self._tell(size, run, f"are below the network's minimum size {self.min_size}")
    return resize_lib.resize(image_lib.preprocess(image), run)

  def _outputs(self, x, mode="saliency"):
    """sigmoid of each output for preprocessed (N, h, w, 3): list of (N, h, w) float64."""
    if mode == "saliency":
      outputs = [self._apply(self.variables, x)]
    else:
      fused, sides = self._apply(self.variables, x, mode=mode)
      outputs = [fused, *sides]
    return [_sigmoid(np.asarray(o)[..., 0]) for o in outputs]

  @staticmethod
  def _back(probabilities, size):
    """A map at its run size back at `size` (aligned corners), in [0, 1]."""
    if probabilities.shape == tuple(size):
      return probabilities
    return np.clip(resize_lib.resize(probabilities[..., None], size)[..., 0], 0.0, 1.0)

  def _tell(self, size, run, why):
    if (size, run) not in self._told:
      self._told.add((size, run))
      logging.warning("images of %dx%d %s: run at %dx%d, maps resized back", *size, why, *run)


def _antialiased(image, size):
  """uint8 RGB image resized to `size` by PIL's bilinear (antialiased when shrinking)."""
  return np.asarray(Image.fromarray(image).resize(tuple(size)[::-1], Image.BILINEAR))


# Image files.


def batch_limit(predictor):
  """Images of a size per batch such that a batch runs at most about max_size^2 pixels."""
  if not predictor.max_size:
    return None

  def limit(size):
    height, width = predictor.run_size(size)
    return max(1, predictor.max_size**2 // (height * width))

  return limit


def run_failure(error, size, predictor):
  """Why an image of `size` could not run, for the report."""
  text = str(error)
  run = predictor.run_size(size)
  if isinstance(error, MemoryError) or "RESOURCE_EXHAUSTED" in text:
    return (
      f"out of memory at {size[0]}x{size[1]} (run at {run[0]}x{run[1]}): a smaller "
      f"--max_size would fit"
    )
  return f"cannot run at {run[0]}x{run[1]}: {text.strip().splitlines()[0] if text else error!r}"


def predict_files(predictor, paths, task="saliency", batch_size=4, failed=None):
  """Yields (path, image, map) once for each image file of `paths`.

  map: (H, W) in [0, 1] at the image's size, the saliency map or (task
  "edge") the edge map; image: its uint8 RGB pixels. Files run in batches of
  one run size (edges one at a time); a batch that fails to run (out of
  memory, say) is retried one image at a time. A file that cannot be read or
  run yields (path, None, None) and its reason goes to `failed` {path: reason}.
  """
  failed = {} if failed is None else failed
  batches = _run_size_batches(predictor, paths, 1 if task == "edge" else batch_size, failed)
  for path in paths:
    if path in failed:  # an unreadable header
      yield path, None, None
  for batch, pad_to in batches:
    images, kept = [], []
    for path in batch:
      try:
        images.append(decode.decode_image(path))
        kept.append(path)
      except decode.DecodeError as error:
        failed[path] = str(error)
        yield path, None, None
    yield from _run(predictor, task, kept, images, pad_to, failed)


def _run_size_batches(predictor, paths, batch_size, failed):
  """[(paths of one run size, pad_to)] from the image headers; unreadable ones go to `failed`.

  A run size with at least one full batch pads its short batch to that size.
  """
  groups = collections.defaultdict(list)
  sizes = {}
  for path in paths:
    try:
      sizes[path] = decode.image_size(path)
    except decode.DecodeError as error:
      failed[path] = str(error)
      continue
    groups[predictor.run_size(sizes[path])].append(path)
  limit = batch_limit(predictor)
  batches = []
  for group in groups.values():
    size_batch = min(batch_size, limit(sizes[group[0]])) if limit else batch_size
    pad_to = size_batch if len(group) >= size_batch else 0
    batches += [
      (group[start : start + size_batch], pad_to) for start in range(0, len(group), size_batch)
    ]
  return batches


def _run(predictor, task, paths, images, pad_to, failed):
  """[(path, image, map or None)] of one batch; on a failure to run, one image at a time, and
  those that still fail go to `failed`."""
  if not images:
    return []
  try:
    if task == "edge":
      maps = [predictor.edges(image) for image in images]
    else:
      maps = predictor.saliency_maps(images, pad_to=pad_to)
    return list(zip(paths, images, maps))
  except RUN_ERRORS as error:
    if len(images) == 1:
      failed[paths[0]] = run_failure(error, images[0].shape[:2], predictor)
      return [(paths[0], None, None)]
  done = []
  for path, image in zip(paths, images):
    done.extend(_run(predictor, task, [path], [image], 0, failed))
  return done


# A model over a source with ground truth.


def _text(name):
  return name.decode("utf-8") if isinstance(name, bytes) else str(name)


def predict_maps(model, variables, source, size=None, max_images=0, size_multiple=0):
  """Yields (name, image, map (H, W) float in [0, 1] at the image's size, gt (H, W) uint8).

  `source[i]` holds "image" (H, W, 3) uint8 and "mask" (H, W, 1) uint8 (a TFDS
  data source or `FolderSource`); batch 1 at each image's native size, or
  `size` = (H', W') for all, or rounded to `size_multiple`; maps resized back;
  `max_images` > 0 stops after that many.
  """
  predictor = Predictor(model, variables, size_multiple=size_multiple)
  count = min(len(source), max_images) if max_images else len(source)
  for index in range(count):
    example = source[index]
    name = _text(example.get("name", index))
    if "mask" not in example:
      raise ValueError(
        f"{name}: the source has no saliency mask ('mask'), only {', '.join(sorted(example))}"
      )
    image = np.asarray(example["image"])
    saliency = predictor.saliency(image[None], size)[0]
    yield name, image, saliency, metrics_lib.as_uint8_mask(example["mask"], name)


def evaluate_model(
  model,
  variables,
  source,
  size=None,
  max_images=0,
  protocol="pysodmetrics",
  map_dir=None,
  progress=None,
  size_multiple=0,
  on_map=None,
):
  """SaliencyMetrics of `model` over `source` (see predict_maps); maps saved in `map_dir` if set.

  `progress` is a label for a progress bar (none if None); `on_map(index,
  image, levels, gt)`, if given, sees each 8-bit map with its image and ground truth.
  """
  metrics = metrics_lib.SaliencyMetrics(protocol)
  maps = predict_maps(model, variables, source, size, max_images, size_multiple)
  if progress is not None:
    total = min(len(source), max_images) if max_images else len(source)
    maps = tqdm.tqdm(maps, total=total, unit="img", desc=progress)
  for index, (name, image, saliency, gt) in enumerate(maps):
    levels = image_lib.to_uint8_map(saliency)
    metrics.update(levels, gt, name)
    if on_map is not None:
      on_map(index, image, levels, gt)
    if map_dir:
      target = Path(map_dir) / f"{name.replace('/', '_')}.png"
      target.parent.mkdir(parents=True, exist_ok=True)
      Image.fromarray(levels).save(target)
  return metrics
