"""Data: TFDS builders (registered on import), robust decoding, folder sources.

    import poolnet_jax.data
    tfds.builder("synthetic_salient", data_dir=D).download_and_prepare()
    train = tfds.data_source("synthetic_salient", data_dir=D, split="train")

Builders: see `poolnet_jax.data.builders`. Decoding rules: `decode`.
"""

from absl import logging

from poolnet_jax.data import builders  # noqa: F401  (registers the TFDS builders)
from poolnet_jax.data.builders.salient_folder import FolderConfig, folder_config
from poolnet_jax.data.builders.synthetic_salient import SyntheticConfig, synthetic_config
from poolnet_jax.data.decode import DecodeError, decode_image, decode_label
from poolnet_jax.data.folder import FolderSource

__all__ = [
  "DecodeError",
  "FolderConfig",
  "FolderSource",
  "SyntheticConfig",
  "decode_image",
  "decode_label",
  "folder_config",
  "prepare",
  "synthetic_config",
]


def prepare(builder, manual_dir=None):
  """Builds the TFDS `builder`'s dataset if it is not built yet (from `manual_dir` if given)."""
  import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel

  if not builder.is_prepared():
    config = builder.builder_config
    name = f"{builder.name}/{config.name}" if config else builder.name
    logging.info("building TFDS dataset %s in %s", name, builder.data_dir)
    config = tfds.download.DownloadConfig(manual_dir=manual_dir) if manual_dir else None
    builder.download_and_prepare(download_config=config)
  return builder
