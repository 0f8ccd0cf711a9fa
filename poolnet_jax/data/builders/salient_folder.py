"""`salient_folder`: your own images and masks (or edge maps) as an array_record TFDS set.

Pairs come from two folders matched by file stem, or from a PoolNet-style
pair list (`image label` per line, relative to the list's folder). The config
name keeps each of your sets apart in `data_dir`:

    import poolnet_jax.data  # registers the builders
    import tensorflow_datasets as tfds
    from poolnet_jax.data.builders.salient_folder import folder_config

    config = folder_config("my_set", image_dir="photos/", label_dir="masks/")
    # or folder_config("my_edges", pair_list="pairs.lst", label="edge", split="train")
    builder = tfds.builder("salient_folder", config=config, data_dir=D)
    builder.download_and_prepare()
    source = builder.as_data_source("train")  # image, mask (or edge), name

Later, without the config: `tfds.builder_from_directory(f"{D}/salient_folder/my_set/1.0.0")`.
For no build at all, `poolnet_jax.data.folder.FolderSource` reads the files directly.
"""

import dataclasses

import tensorflow_datasets as tfds

from poolnet_jax.data import files
from poolnet_jax.data.builders import base


@dataclasses.dataclass(eq=False)
class FolderConfig(tfds.core.BuilderConfig):
  image_dir: str = None
  label_dir: str = None
  pair_list: str = None
  label: str = "mask"  # feature name of the label: "mask" or "edge"
  split: str = "train"


def folder_config(
  name, image_dir=None, label_dir=None, *, pair_list=None, label="mask", split="train"
):
  """A FolderConfig; give either both folders or a pair list."""
  if label not in ("mask", "edge"):
    raise ValueError(f"label must be 'mask' or 'edge', got {label!r}")
  if pair_list is None and (image_dir is None or label_dir is None):
    raise ValueError("folder_config needs image_dir and label_dir, or pair_list")
  source = pair_list or f"{image_dir} + {label_dir}"
  return FolderConfig(
    name=name,
    image_dir=image_dir,
    label_dir=label_dir,
    pair_list=pair_list,
    label=label,
    split=split,
    description=f"{label} pairs from {source}",
  )


class SalientFolder(base.PairedFilesBuilder):
  """Image / label pairs from a user's folders or pair list."""

  BUILDER_CONFIGS = []
  DESCRIPTION = "A user's own images with salient-object masks or edge maps."

  @property
  def LABEL(self):  # pylint: disable=invalid-name
    return self.builder_config.label if self.builder_config else "mask"

  def _split_generators(self, dl_manager):
    del dl_manager
    config = self.builder_config
    if not isinstance(config, FolderConfig):
      raise ValueError(
        "salient_folder needs a config: tfds.builder('salient_folder', "
        "config=folder_config(name, image_dir, label_dir), data_dir=...)"
      )
    self.build_reports = {}
    if config.pair_list:
      pairs, unmatched = files.read_pair_list(config.pair_list), files.Unmatched()
    else:
      pairs, unmatched = files.pair_by_stem(config.image_dir, config.label_dir)
    return {config.split: self._generate_examples(config.split, pairs, unmatched)}
