"""Salient object detection sets from your own downloads.

Builders duts, ecssd, pascal_s, dut_omron, hku_is and sod. Nothing is
downloaded: put the archives (zip / tar) or extracted folders in a
manual dir, then build. Each set may sit in `<manual_dir>/<NAME>/` (NAME the
builder name or the set's usual folder, e.g. `ECSSD/`) or at the top of a
manual dir of its own:

    import poolnet_jax.data  # registers the builders
    import tensorflow_datasets as tfds

    builder = tfds.builder("ecssd", data_dir=D)
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
        manual_dir="~/downloads/ECSSD"))  # default: D/downloads/manual
    test = tfds.data_source("ecssd", data_dir=D, split="test")  # image, mask, name

Features: `image` (H, W, 3) uint8, `mask` (H, W, 1) uint8 as stored (not
binarised), `name` (file stem; bytes from a data source). Images and masks
are paired by file stem, or by a PoolNet-style pair list (`image mask` per
line, or `image` alone with the .png of the same stem beside it), which wins
when present. Unreadable files, missing partners and size mismatches are
skipped, each logged with its reason, and counted in a summary at the end of
the split (also in `builder.build_reports[split]`); a count other than the
official one below logs a warning.

- duts: train = DUTS-TR (10,553), test = DUTS-TE (5,019). Archives DUTS-TR.zip,
  DUTS-TE.zip; folders DUTS-TR/DUTS-TR-Image + DUTS-TR/DUTS-TR-Mask (same for TE).
- ecssd: test (1,000). images.zip + ground_truth_mask.zip, or images/ +
  ground_truth_mask/.
- pascal_s: test (850). PASCAL-S/Imgs + PASCAL-S/GT, or salObj.zip's
  datasets/imgs/pascal + datasets/masks/pascal (graded masks: binarise at 0.5
  to evaluate).
- dut_omron: test (5,168). DUT-OMRON-image.zip + DUT-OMRON-gt-pixelwise.zip.zip
  (a zip inside a zip is extracted too); DUT-OMRON-image/ + pixelwiseGT-new-PNG/.
- hku_is: test (4,447, all images; PoolNet evaluated a 1,447-image list: put
  it beside the images as test.lst). HKU-IS/imgs + HKU-IS/gt; extract the
  .rar yourself.
- sod: test (300). SOD/Imgs + SOD/GT.

PoolNet's own layout (`<SET>/Imgs/` holding .jpg images and .png masks with a
`test.lst`, and `DUTS/DUTS-TR/train_pair.lst`) is accepted as well.
"""

from poolnet_jax.data.builders import base

SplitFiles = base.SplitFiles

# Tried after each set's own candidates.
IMAGE_DIRS = ("Imgs", "images", "Images", "Image", "imgs", "img")
MASK_DIRS = ("GT", "gt", "masks", "Masks", "mask", "Mask", "Imgs")


def _split(prefixes, images, masks, archives, expected, lists=("test.lst",)):
  """SplitFiles with each name tried under each prefix, then the generic names."""
  under = lambda names: tuple(f"{p}/{n}" if p else n for p in prefixes for n in names)
  return SplitFiles(
    image_dirs=under(images + IMAGE_DIRS),
    label_dirs=under(masks + MASK_DIRS),
    lists=under(lists),
    archives=tuple(archives),
    expected=expected,
  )


class _SaliencySet(base.PairedFilesBuilder, skip_registration=True):
  LABEL = "mask"


class Duts(_SaliencySet):
  """DUTS (Wang et al., CVPR 2017): DUTS-TR as train, DUTS-TE as test."""

  FOLDERS = ("DUTS",)
  SPLITS = {
    "train": SplitFiles(
      image_dirs=("DUTS-TR/DUTS-TR-Image", "DUTS-TR-Image", "DUTS-TR/Imgs"),
      label_dirs=("DUTS-TR/DUTS-TR-Mask", "DUTS-TR-Mask", "DUTS-TR/Imgs"),
      lists=("DUTS-TR/train_pair.lst", "train_pair.lst"),
      archives=("DUTS-TR.zip", "DUTS-TR.tar.gz"),
      expected=10553,
    ),
    "test": SplitFiles(
      image_dirs=("DUTS-TE/DUTS-TE-Image", "DUTS-TE-Image", "DUTS-TE/Imgs"),
      label_dirs=("DUTS-TE/DUTS-TE-Mask", "DUTS-TE-Mask", "DUTS-TE/Imgs"),
      lists=("DUTS-TE/test.lst",),
      archives=("DUTS-TE.zip", "DUTS-TE.tar.gz"),
      expected=5019,
    ),
  }
  DESCRIPTION = "DUTS salient object detection: DUTS-TR (train) and DUTS-TE (test)."
  HOMEPAGE = "http://saliencydetection.net/duts/"
  MANUAL_DOWNLOAD_INSTRUCTIONS = base.manual_instructions("DUTS", SPLITS)


class Ecssd(_SaliencySet):
  """ECSSD, extended complex scene saliency (Yan et al., CVPR 2013)."""

  FOLDERS = ("ECSSD",)
  SPLITS = {
    "test": _split(
      ("ECSSD", ""),
      ("images",),
      ("ground_truth_mask",),
      ("images.zip", "ground_truth_mask.zip", "ECSSD.zip"),
      1000,
    )
  }
  DESCRIPTION = "ECSSD: 1,000 images of complex scenes with salient object masks."
  HOMEPAGE = "https://www.cse.cuhk.edu.hk/leojia/projects/hsaliency/dataset.html"
  MANUAL_DOWNLOAD_INSTRUCTIONS = base.manual_instructions("ECSSD", SPLITS)


class PascalS(_SaliencySet):
  """PASCAL-S (Li et al., CVPR 2014); salObj masks are graded: binarise at 0.5 to evaluate."""

  FOLDERS = ("PASCAL-S", "PASCALS")
  SPLITS = {
    "test": _split(
      ("PASCAL-S", "PASCALS", "datasets", ""),
      ("imgs/pascal",),
      ("masks/pascal",),
      ("PASCAL-S.zip", "PASCALS.zip", "salObj.zip"),
      850,
    )
  }
  DESCRIPTION = "PASCAL-S: 850 PASCAL VOC 2010 images with salient object masks."
  HOMEPAGE = "https://cbs.ic.gatech.edu/salobj/"
  MANUAL_DOWNLOAD_INSTRUCTIONS = base.manual_instructions("PASCAL-S", SPLITS)


class DutOmron(_SaliencySet):
  """DUT-OMRON (Yang et al., CVPR 2013)."""

  FOLDERS = ("DUT-OMRON", "DUTOMRON")
  SPLITS = {
    "test": _split(
      ("DUT-OMRON", "DUTOMRON", ""),
      ("DUT-OMRON-image",),
      ("pixelwiseGT-new-PNG", "DUT-OMRON-gt-pixelwise"),
      (
        "DUT-OMRON-image.zip",
        "DUT-OMRON-gt-pixelwise.zip.zip",
        "DUT-OMRON-gt-pixelwise.zip",
        "DUT-OMRON.zip",
      ),
      5168,
    )
  }
  DESCRIPTION = "DUT-OMRON: 5,168 images with pixel-wise salient object masks."
  HOMEPAGE = "http://saliencydetection.net/dut-omron/"
  MANUAL_DOWNLOAD_INSTRUCTIONS = base.manual_instructions("DUT-OMRON", SPLITS)


class HkuIs(_SaliencySet):
  """HKU-IS (Li and Yu, CVPR 2015): all 4,447 images as `test`."""

  FOLDERS = ("HKU-IS", "HKUIS")
  SPLITS = {
    "test": _split(
      ("HKU-IS", "HKUIS", ""),
      ("imgs",),
      ("gt",),
      ("HKU-IS.zip", "HKU-IS.tar.gz", "HKU-IS.tar"),
      4447,
    )
  }
  DESCRIPTION = (
    "HKU-IS: 4,447 images with salient object masks. PoolNet evaluated on "
    "a 1,447-image test list: put it beside the images as test.lst to use it."
  )
  HOMEPAGE = "https://sites.google.com/site/ligb86/hkuis"
  MANUAL_DOWNLOAD_INSTRUCTIONS = base.manual_instructions("HKU-IS", SPLITS)


class Sod(_SaliencySet):
  """SOD (Movahedi and Elder, 2010): 300 BSDS images with salient object masks."""

  FOLDERS = ("SOD",)
  SPLITS = {"test": _split(("SOD", ""), (), (), ("SOD.zip", "SOD.tar.gz"), 300)}
  DESCRIPTION = "SOD: 300 images from BSDS300 with salient object masks."
  HOMEPAGE = "https://elderlab.yorku.ca/resources/salient-objects-dataset-sod/"
  MANUAL_DOWNLOAD_INSTRUCTIONS = base.manual_instructions("SOD", SPLITS)


BUILDERS = (Duts, Ecssd, PascalS, DutOmron, HkuIs, Sod)
