"""What every builder here shares: array_record output, no TensorFlow, build reports.

`ArrayRecordBuilder` writes array_record files by default, which
`tfds.data_source` serves without TensorFlow, and finds its own source file
without `importlib_resources` (tfds 4.9.10 asks for that package, which is not
installed, when a builder lives in a regular package).

`PairedFilesBuilder` is the generic real-data builder: each subclass names its
splits as `SplitFiles` (archives, candidate folders or .lst files, expected
count), and the base class finds them under the manual dir, extracts archives,
pairs files by stem, decodes each pair with `decode.load_pair` (upright by each
file's EXIF orientation; a turned file is stored re-encoded), skips bad ones
and reports them (`BuildReport`).
"""

import dataclasses
import inspect
import os
import textwrap

from absl import logging
from etils import epath
import tensorflow_datasets as tfds

from poolnet_jax.data import decode
from poolnet_jax.data import files

FILE_FORMAT = "array_record"


class ArrayRecordBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """A GeneratorBasedBuilder whose default file format is array_record."""

  def __init__(self, *, file_format=None, **kwargs):
    super().__init__(file_format=file_format or FILE_FORMAT, **kwargs)

  @tfds.core.utils.classproperty
  @classmethod
  def code_path(cls):
    return epath.Path(inspect.getfile(cls))


class BuildReport:
  """What one split's build wrote, skipped (with reasons) and found empty."""

  def __init__(self, where):
    self.where = where
    self.written = 0
    self.skipped = []  # (file or name, reason)
    self.empty = []  # names whose label is all zero (kept)
    self.scaled = []  # names whose label was stored as 0/1 (kept, scaled to 0/255)

  def skip(self, what, reason):
    self.skipped.append((what, reason))
    logging.warning("%s: skipped %s: %s", self.where, what, reason)

  def summary(self):
    text = f"{self.where}: wrote {self.written} examples, skipped {len(self.skipped)}"
    if self.empty:
      text += f", {len(self.empty)} with an all-zero label (kept: {', '.join(self.empty[:5])}"
      text += ", ...)" if len(self.empty) > 5 else ")"
    if self.scaled:
      text += (
        f", {len(self.scaled)} labels stored as 0/1 scaled to 0/255 "
        f"({', '.join(self.scaled[:5])}" + (", ...)" if len(self.scaled) > 5 else ")")
      )
    return text

  def check_label(self, name, label):
    """The label as kept: 0/1 scaled to 0/255 (noted in `scaled`); all-zero noted in `empty`."""
    label, scaled = decode.scale_01_mask(label)
    if scaled:
      self.scaled.append(name)
      logging.warning("%s: %s: label stored as 0/1, scaled to 0/255", self.where, name)
    if not label.any():
      self.empty.append(name)
    return label, scaled

  def finish(self, expected=None, listed=20):
    """Logs the summary (with the first skips); warns on a count mismatch; fails on none."""
    if self.skipped or self.empty or self.scaled:
      lines = [f"\n  {what}: {reason}" for what, reason in self.skipped[:listed]]
      more = len(self.skipped) - listed
      logging.warning(
        "%s%s%s",
        self.summary(),
        "".join(lines),
        f"\n  ... and {more} more (logged above)" if more > 0 else "",
      )
    else:
      logging.info("%s", self.summary())
    if expected is not None and self.written != expected:
      logging.warning(
        "%s: wrote %d examples but the official set has %d: check the "
        "download (see the skips above)",
        self.where,
        self.written,
        expected,
      )
    if not self.written:
      reasons = "; ".join(f"{w}: {r}" for w, r in self.skipped[:3])
      raise ValueError(
        f"{self.where}: no usable examples, all {len(self.skipped)} skipped ({reasons})"
      )


@dataclasses.dataclass(frozen=True)
class SplitFiles:
  """Where one split may be found under the manual dir; the first match wins.

  Paths are relative to the manual dir or to an extracted archive (glob
  patterns allowed); those with a folder part (`DUTS-TR/DUTS-TR-Image`) are
  also tried one folder deeper, bare names (`images`) only where they are, so
  that a manual dir shared by several sets cannot lend one set another's
  files. A pair list, when found, is used before the folders.
  """

  image_dirs: tuple = ()
  label_dirs: tuple = ()
  lists: tuple = ()
  archives: tuple = ()
  expected: int = None


def manual_instructions(name, splits, extra=""):
  """MANUAL_DOWNLOAD_INSTRUCTIONS text for a set of SplitFiles."""
  lines = [
    f"Put the {name} files in the manual dir (default "
    "`<data_dir>/downloads/manual/`): archives as downloaded (zip or tar, "
    "extracted on first build; extract .rar yourself) or already-extracted folders."
  ]
  for split, where in splits.items():
    count = f"{where.expected:,} pairs" if where.expected else "pairs"
    lines.append(
      f"- {split} ({count}): archives {', '.join(where.archives) or '-'}; images in "
      f"{' | '.join(where.image_dirs) or '-'}; labels in "
      f"{' | '.join(where.label_dirs) or '-'}; or a pair list "
      f"{' | '.join(where.lists) or '-'} (`image label` per line)."
    )
  if extra:
    lines.append(textwrap.dedent(extra).strip())
  return "\n".join(lines)


class PairedFilesBuilder(ArrayRecordBuilder, skip_registration=True):
  """Images paired with masks (or edge maps) by file stem or by a pair list."""

  VERSION = tfds.core.Version("1.0.0")
  LABEL = "mask"  # or "edge"
  SPLITS = {}  # split name -> SplitFiles
  FOLDERS = ()  # subfolders of the manual dir searched first, besides the builder's name
  DESCRIPTION = ""
  HOMEPAGE = ""
  CITATION = ""

  def _info(self):
    return tfds.core.DatasetInfo(
      builder=self,
      description=self.DESCRIPTION,
      features=tfds.features.FeaturesDict(
        {
          "image": tfds.features.Image(shape=(None, None, 3)),
          self.LABEL: tfds.features.Image(shape=(None, None, 1)),
          "name": tfds.features.Text(),
        }
      ),
      homepage=self.HOMEPAGE or None,
      citation=self.CITATION or None,
    )

  def _split_generators(self, dl_manager):
    manual = os.fspath(dl_manager.manual_dir)
    own = [os.path.join(manual, f) for f in (self.name, *self.FOLDERS)]
    self.build_reports = {}
    generators, missing = {}, []
    for split, where in self.SPLITS.items():
      roots = [d for d in own if os.path.isdir(d)] + [manual]
      roots += self._extract(roots, where.archives, dl_manager)
      found = locate_pairs(roots, where)
      if found is None:
        missing.append(
          f"{split}: no pair list {where.lists} and no image folder "
          f"{where.image_dirs} with a label folder {where.label_dirs}"
        )
        continue
      generators[split] = self._generate_examples(split, *found, expected=where.expected)
    if not generators:
      raise FileNotFoundError(
        f"{self.name}: nothing found under {manual}:\n  "
        + "\n  ".join(missing)
        + f"\n{self.MANUAL_DOWNLOAD_INSTRUCTIONS}"
      )
    for line in missing:
      logging.warning("%s: split not found, building without it (%s)", self.name, line)
    return generators

  def _extract(self, roots, archives, dl_manager):
    """Extracts the named archives found in `roots` (and archives inside them)."""
    extracted = []
    for name in archives:
      path = files.find_path(roots, [name], want_dir=False)
      if not path or not files.is_archive(path):
        continue
      target = os.path.join(
        os.fspath(dl_manager.download_dir),
        "extracted",
        f"{self.name}-{os.path.basename(path)}-{os.path.getsize(path)}",
      )
      logging.info("%s: extracting %s to %s", self.name, path, target)
      extracted.append(files.extract(path, target))
      for inner in sorted(os.listdir(target)):  # e.g. a .zip.zip download
        if files.is_archive(os.path.join(target, inner)):
          extracted.append(
            files.extract(os.path.join(target, inner), os.path.join(target, inner + ".extracted"))
          )
    return extracted

  def _generate_examples(self, split, pairs, unmatched, expected=None):
    report = self.build_reports[split] = BuildReport(f"{self.name}/{split}")
    for path in unmatched.images:
      report.skip(path, f"no {self.LABEL} with the same file stem")
    for path in unmatched.labels:
      report.skip(path, "no image with the same file stem")
    seen = set()
    for name, image_path, label_path in pairs:
      if name in seen:
        report.skip(image_path, f"repeats the name {name!r}")
        continue
      seen.add(name)
      try:
        image, label_bytes, label = decode.load_pair(image_path, label_path)
      except decode.DecodeError as e:
        report.skip(name, str(e))
        continue
      label, scaled = report.check_label(name, label)
      if scaled:
        label_bytes = decode.encode_png(label)
      report.written += 1
      yield name, {"image": image, self.LABEL: label_bytes, "name": name}
    report.finish(expected)


def locate_pairs(roots, where):
  """(pairs, Unmatched) for a split from the first list or folder pair found, else None.

  A list's relative paths may also be relative to the split's image folder
  (PoolNet's test.lst names files inside Imgs/).
  """
  deeper = lambda names: tuple(names) + tuple(f"*/{n}" for n in names if "/" in n)
  image_dirs = _all_paths(roots, deeper(where.image_dirs))
  pair_list = files.find_path(roots, deeper(where.lists), want_dir=False)
  if pair_list:
    logging.info("reading pairs from %s", pair_list)
    return files.read_pair_list(pair_list, image_dirs + list(roots)), files.Unmatched()
  for image_dir in image_dirs:
    label_dir = files.find_path(
      [os.path.dirname(image_dir)] + list(roots), deeper(where.label_dirs)
    )
    if label_dir:
      logging.info("pairing %s with %s by file stem", image_dir, label_dir)
      return files.pair_by_stem(image_dir, label_dir)
  return None


def _all_paths(roots, candidates):
  seen = []
  for candidate in candidates:
    for root in roots:
      path = files.find_path([root], [candidate])
      if path and path not in seen:
        seen.append(path)
  return seen
