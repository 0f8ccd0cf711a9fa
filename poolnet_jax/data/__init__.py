"""Data: TFDS builders (registered on import), robust decoding, folder sources.

    import poolnet_jax.data
    tfds.builder("synthetic_salient", data_dir=D).download_and_prepare()
    train = tfds.data_source("synthetic_salient", data_dir=D, split="train")

Builders: see `poolnet_jax.data.builders`. Decoding rules: `decode`.
"""

from poolnet_jax.data import builders
from poolnet_jax.data.builders.salient_folder import FolderConfig, folder_config
from poolnet_jax.data.builders.synthetic_salient import SyntheticConfig, synthetic_config
from poolnet_jax.data.decode import DecodeError, decode_image, decode_label
from poolnet_jax.data.folder import FolderSource

__all__ = ["DecodeError", "FolderConfig", "FolderSource", "SyntheticConfig", "decode_image",
           "decode_label", "folder_config", "synthetic_config"]
