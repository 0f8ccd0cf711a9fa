"""predict's files: the inputs found from files, folders and globs; the outputs planned and checked.

items, unmatched = expand_inputs(["photos/", "extra/*.jpg"], exclude="maps/")
check_outputs(items, "maps/", cutout=True)  # UserError listing any collision
write_outputs(output_paths(stem, "maps/")[0], image, saliency, cutout=True)
"""

import glob
import os
from pathlib import Path

import numpy as np
from PIL import Image

from poolnet_jax.data import decode
from poolnet_jax.errors import UserError
from poolnet_jax.imaging import image as image_lib


def expand_inputs(inputs, exclude=None):
  """Files, folders (their images, recursively) and globs -> ([(path, output stem)], unmatched).

  The output stem is the file's stem, with its sub-folder for images found in a
  folder. Files under `exclude` (the output folder) are left out of folders. A
  file reached twice (by two inputs, or two spellings of its path) counts once.
  """
  exclude = Path(exclude).resolve() if exclude else None
  found, unmatched, seen = [], [], set()
  for item in inputs:
    if os.path.isdir(item):
      root = Path(item)
      images = [
        p
        for p in root.rglob("*")
        if p.is_file()
        and not p.name.startswith(".")
        and p.suffix.lower() in decode.IMAGE_EXTENSIONS
      ]
      paths = sorted(p for p in images if not (exclude and exclude in p.resolve().parents))
      if images and not paths:
        item = f"{item} (its images are all under --output {exclude})"
      pairs = [(p, p.relative_to(root).with_suffix("")) for p in paths]
    else:
      paths = (
        [Path(item)]
        if os.path.isfile(item)
        else sorted(Path(p) for p in glob.glob(item, recursive=True) if os.path.isfile(p))
      )
      pairs = [(p, Path(p.stem)) for p in paths]
    for path, stem in pairs:
      real = os.path.realpath(path)
      if real not in seen:
        seen.add(real)
        found.append((path, stem))
    if not paths:
      unmatched.append(item)
  return found, unmatched


def output_paths(stem, output, cutout=False, overlay=False):
  """The files written for an input of output stem `stem`: the map, then cutout and overlay."""
  base = Path(output) / stem
  suffixes = [".png"] + ["_cutout.png"] * cutout + ["_overlay.png"] * overlay
  return [base.with_name(base.name + suffix) for suffix in suffixes]


def check_outputs(items, output, cutout=False, overlay=False, listed=20):
  """Raises UserError listing every planned output that would overwrite an input file, land on
  another output, or need a folder where a file is; `items` as expand_inputs returns them."""
  inputs = {os.path.realpath(path): path for path, _ in items}
  claimed, problems = {}, []
  for path, stem in items:
    for target in output_paths(stem, output, cutout, overlay):
      real = os.path.realpath(target)
      if real in inputs:
        problems.append(f"{target} (for {path}) is the input {inputs[real]}")
      elif real in claimed:
        problems.append(f"{target} (for {path}) is also the output for {claimed[real]}")
      elif os.path.isdir(target):
        problems.append(f"{target} (for {path}) is a folder")
      else:
        claimed[real] = path
        blocked = next((p for p in target.parents if p.exists() and not p.is_dir()), None)
        if blocked is not None:
          problems.append(f"{target} (for {path}) needs the folder {blocked}, which is a file")
  if problems:
    more = f"\n  ... and {len(problems) - listed} more" if len(problems) > listed else ""
    raise UserError(
      f"{len(problems)} outputs would overwrite an input or another output, nothing written "
      f"(choose another --output, or rename the inputs):\n  "
      + "\n  ".join(problems[:listed])
      + more
    )


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
