"""Your own images with masks (or edge maps) as a random-access source: no build step.

    source = FolderSource("photos/", "masks/")          # paired by file stem
    source = FolderSource(pair_list="train_pair.lst")   # `image label` per line
    source = FolderSource("photos/")                    # images only (prediction)
    len(source), source[0]  # {"image": (H, W, 3) uint8, "mask": (H, W, 1) uint8, "name": str}

It has `__len__` and `__getitem__`, so grain takes it as a data source.
Decoding follows `poolnet_jax.data.decode`; a bad file raises DecodeError
naming it, unless `validate=True` checked every pair up front and dropped the
bad ones (each logged with its reason; the tally is in `source.report`). Labels
stored as 0/1 are read as 0/255, with a warning naming the file (and, with
`validate=True`, listed in `source.report.scaled`). Images and labels are read
upright by their own EXIF orientation tags, `image_size` included.
"""

import os

from absl import logging

from poolnet_jax.data import decode
from poolnet_jax.data import files
from poolnet_jax.data.builders.base import BuildReport


class FolderSource:
  """Random access to (image, label) pairs from two folders or a pair list."""

  def __init__(
    self, image_dir=None, label_dir=None, *, pair_list=None, label="mask", validate=False
  ):
    if label not in ("mask", "edge"):
      raise ValueError(f"label must be 'mask' or 'edge', got {label!r}")
    self.label = label
    self._told = set()  # label files already warned about
    self.report = BuildReport(f"FolderSource({pair_list or image_dir})")
    if pair_list is not None:
      self.pairs = files.read_pair_list(pair_list)
    elif image_dir is None:
      raise ValueError("FolderSource needs image_dir (and label_dir) or pair_list")
    elif label_dir is None:
      self.pairs = [
        (stem, path, None) for stem, path in sorted(files.list_images(image_dir).items())
      ]
    else:
      self.pairs, unmatched = files.pair_by_stem(image_dir, label_dir)
      for path in unmatched.images:
        self.report.skip(path, f"no {label} with the same file stem")
      for path in unmatched.labels:
        self.report.skip(path, "no image with the same file stem")
    if validate:
      self.pairs = [pair for pair in self.pairs if self._usable(pair)]
      self.report.written = len(self.pairs)
      self.report.finish()
    elif self.report.skipped:
      logging.warning("%s", self.report.summary())

  def _usable(self, pair):
    name, image_path, label_path = pair
    try:
      if label_path is None:
        decode.decode_image(image_path)
        return True
      _, _, label = decode.load_pair(image_path, label_path)
    except decode.DecodeError as e:
      self.report.skip(name, str(e))
      return False
    if self.report.check_label(name, label)[1]:
      self._told.add(label_path)  # warned about once already
    return True

  def __len__(self):
    return len(self.pairs)

  def __getitem__(self, index):
    name, image_path, label_path = self.pairs[index]
    example = {"image": decode.decode_image(image_path), "name": name}
    if label_path is not None:
      label = decode.decode_label(label_path)
      decode.check_pair_size(image_path, example["image"].shape[:2], label_path, label.shape[:2])
      label, scaled = decode.scale_01_mask(label)
      if scaled and label_path not in self._told:
        self._told.add(label_path)
        logging.warning("%s: label stored as 0/1, read as 0/255", label_path)
      example[self.label] = label
    return example

  def image_size(self, index):
    """(H, W) of image `index` from its file header (DecodeError naming the file if bad)."""
    return decode.image_size(self.pairs[index][1])

  def __repr__(self):
    first = os.path.dirname(self.pairs[0][1]) if self.pairs else "-"
    return f"FolderSource({len(self)} {self.label} pairs from {first})"
