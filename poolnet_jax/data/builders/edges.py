"""`bsds_pascal_edges`: the BSDS500 + PASCAL-Context edge training set of PoolNet's joint model.

Nothing is downloaded. Put in a manual dir the edge data as distributed for
HED / RCF (archives `HED-BSDS.tar.gz` and `PASCAL.tar.gz`, or one
`HED-BSDS_PASCAL` archive or folder) together with its pair list, e.g.
`bsds_pascal_train_pair.lst` or PoolNet's `bsds_pascal_train_pair_r_val_r_small.lst`:
one `image_path edge_path` per line, relative to the list's folder, the
manual dir or an extracted archive.

    import poolnet_jax.data  # registers the builders
    import tensorflow_datasets as tfds

    builder = tfds.builder("bsds_pascal_edges", data_dir=D)
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
        manual_dir="~/downloads/HED-BSDS_PASCAL"))
    train = tfds.data_source("bsds_pascal_edges", data_dir=D, split="train")

Features: `image` (H, W, 3) uint8, `edge` (H, W, 1) uint8 as stored (the
annotators' average: PoolNet sets values above 0.5 * 255 to 1 and ignores the
rest of the non-zero ones in its loss), `name` (the image path as listed, less
its extension, when stems repeat across augmentation folders). Unreadable
files and size mismatches are skipped, logged and counted.
"""

from poolnet_jax.data.builders import base

LISTS = (
  "bsds_pascal_train_pair_r_val_r_small.lst",
  "bsds_pascal_train_pair.lst",
  "train_pair.lst",
  "*pair*.lst",
)


class BsdsPascalEdges(base.PairedFilesBuilder):
  """Edge maps of BSDS500 (augmented) and PASCAL-Context for the edge branch."""

  LABEL = "edge"
  FOLDERS = ("HED-BSDS_PASCAL", "BSDS_PASCAL")
  SPLITS = {
    "train": base.SplitFiles(
      lists=tuple(f"HED-BSDS_PASCAL/{n}" for n in LISTS) + LISTS,
      archives=(
        "HED-BSDS_PASCAL.tar.gz",
        "HED-BSDS_PASCAL.zip",
        "HED-BSDS.tar.gz",
        "PASCAL.tar.gz",
      ),
    )
  }
  DESCRIPTION = (
    "BSDS500 (augmented, as prepared for HED) and PASCAL-Context contours: the "
    "edge training set of PoolNet's joint edge + saliency model."
  )
  HOMEPAGE = "https://github.com/yun-liu/RCF"
  MANUAL_DOWNLOAD_INSTRUCTIONS = base.manual_instructions("BSDS500 + PASCAL edge", SPLITS)
