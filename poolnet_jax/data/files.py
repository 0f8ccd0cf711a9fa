"""Finding image / label pairs on disk: folders matched by stem, PoolNet .lst files, archives.

    pairs, unmatched = pair_by_stem("ECSSD/images", "ECSSD/ground_truth_mask")
    pairs = read_pair_list("DUTS-TR/train_pair.lst")  # "image_path label_path" lines

A pair is `(name, image_path, label_path)`; `name` is the image's stem.
"""

import dataclasses
import glob
import os
import tarfile
import zipfile

from poolnet_jax.data.decode import IMAGE_EXTENSIONS

ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")


@dataclasses.dataclass
class Unmatched:
  """Files that found no partner, reported by the builders as skips."""

  images: list = dataclasses.field(default_factory=list)
  labels: list = dataclasses.field(default_factory=list)

  def __len__(self):
    return len(self.images) + len(self.labels)


def list_images(folder, exclude_suffix=None):
  """{stem: path} of the image files directly in `folder` (hidden files ignored).

  Raises ValueError naming the folder if it is missing or holds no image, or if
  two files share a stem.
  """
  if not os.path.isdir(folder):
    raise ValueError(f"{folder}: folder not found")
  found = {}
  for entry in sorted(os.listdir(folder)):
    stem, suffix = os.path.splitext(entry)
    suffix = suffix.lower()
    if entry.startswith(".") or suffix not in IMAGE_EXTENSIONS or suffix == exclude_suffix:
      continue
    path = os.path.join(folder, entry)
    if not os.path.isfile(path):
      continue
    if stem in found:
      raise ValueError(
        f"{folder}: two files share the stem {stem!r}: {os.path.basename(found[stem])} and {entry}"
      )
    found[stem] = path
  if not found:
    raise ValueError(f"{folder}: no image files ({', '.join(IMAGE_EXTENSIONS)}) in this folder")
  return found


def pair_by_stem(image_dir, label_dir):
  """Pairs the images in `image_dir` with the labels of the same stem in `label_dir`.

  When both are the same folder (PoolNet's `Imgs/` layout), labels are its .png
  files and images everything else. Returns (sorted pairs, Unmatched).
  """
  same = os.path.realpath(image_dir) == os.path.realpath(label_dir)
  if same:
    labels = {s: p for s, p in list_images(label_dir).items() if p.lower().endswith(".png")}
    images = list_images(image_dir, exclude_suffix=".png")
  else:
    images, labels = list_images(image_dir), list_images(label_dir)
  pairs = [(stem, images[stem], labels[stem]) for stem in sorted(images) if stem in labels]
  unmatched = Unmatched(
    images=sorted(images[s] for s in images if s not in labels),
    labels=sorted(labels[s] for s in labels if s not in images),
  )
  if not pairs:
    raise ValueError(
      f"no image/label pairs share a file stem between {image_dir} "
      f"({len(images)} images, e.g. {_first(images)}) and {label_dir} "
      f"({len(labels)} labels, e.g. {_first(labels)})"
    )
  return pairs, unmatched


def _first(files):
  return os.path.basename(next(iter(files.values()))) if files else "none"


def read_pair_list(list_path, roots=()):
  """Pairs from a PoolNet-style list: one `image [label]` per line.

  Relative paths are tried against the list's folder, then each of `roots`;
  a path found nowhere is kept under the list's folder so the build reports it
  as missing. A line with only an image takes the .png of the same stem beside
  it as its label (PoolNet's test.lst). Blank lines and `#` comments are
  ignored; a line with more than two fields is an error naming the line.
  Names are the image stems, or the image paths as written (less the
  extension) when stems repeat.
  """
  base = os.path.dirname(os.path.abspath(list_path))
  try:
    with open(list_path, encoding="utf-8") as f:
      lines = f.read().splitlines()
  except (OSError, UnicodeDecodeError) as e:
    raise ValueError(f"{list_path}: cannot read pair list: {e}") from e
  entries = []
  for number, line in enumerate(lines, 1):
    fields = line.split()
    if not fields or fields[0].startswith("#"):
      continue
    if len(fields) > 2:
      raise ValueError(f"{list_path}:{number}: expected 'image [label]', got {line!r}")
    image = _resolve(fields[0], base, roots)
    label = (
      _resolve(fields[1], base, roots) if len(fields) == 2 else os.path.splitext(image)[0] + ".png"
    )
    entries.append((os.path.splitext(fields[0])[0], image, label))
  if not entries:
    raise ValueError(f"{list_path}: pair list has no entries")
  stems = [os.path.basename(written) for written, _, _ in entries]
  if len(set(stems)) == len(stems):
    return [(stem, image, label) for stem, (_, image, label) in zip(stems, entries)]
  return [(written.lstrip("./"), image, label) for written, image, label in entries]


def _resolve(path, base, roots):
  if os.path.isabs(path):
    return path
  for root in (base, *roots):
    candidate = os.path.join(root, path)
    if os.path.exists(candidate):
      return candidate
  return os.path.join(base, path)


def find_path(roots, candidates, want_dir=True):
  """First existing `root/candidate` over roots and candidates (glob patterns allowed)."""
  for candidate in candidates:
    for root in roots:
      for path in sorted(glob.glob(os.path.join(glob.escape(root), candidate))):
        if os.path.isdir(path) if want_dir else os.path.isfile(path):
          return path
  return None


def is_archive(path):
  return os.path.isfile(path) and path.lower().endswith(ARCHIVE_SUFFIXES)


def extract(archive, destination):
  """Extracts a zip or tar archive once into `destination` and returns it."""
  done = os.path.join(destination, ".extracted")
  if os.path.exists(done):
    return destination
  os.makedirs(destination, exist_ok=True)
  try:
    if archive.lower().endswith(".zip"):
      with zipfile.ZipFile(archive) as z:
        z.extractall(destination)  # drops absolute and '..' parts of member names
    else:
      with tarfile.open(archive) as t:
        t.extractall(destination, filter="data")
  except (OSError, zipfile.BadZipFile, tarfile.TarError, EOFError) as e:
    raise ValueError(f"{archive}: cannot extract archive: {e}") from e
  open(done, "w").close()
  return destination
