"""Exports a PoolNet's saliency function as artifacts that run without poolnet_jax.

    python -m poolnet_jax.cli.export converted/ exported/ [--sizes 300x400,320x320]
        [--platforms cpu,cuda] [--format jax|onnx] [--batch 1] [--overwrite]

CHECKPOINT is a converted or trained model directory or an original `.pth`.
OUT gets one artifact per size, `HxW.jax` (`jax.export`, StableHLO with the
weights; any batch; for the platforms named) or `HxW.onnx` (through jax2onnx,
a fixed batch; checked against onnxruntime where it is installed), and
`index.json` (sizes, platforms, the model spec, versions). Each takes uint8 RGB
(N, H, W, 3) and returns the saliency map (N, H, W) in [0, 1], float32:

    exported = jax.export.deserialize(bytearray(open("exported/300x400.jax", "rb").read()))
    maps = exported.call(rgb)

Height and width are fixed per artifact (poolnet_jax/inference/artifact.py says why).
OUT must be new or empty; `--overwrite` replaces the files an export writes.
Mistakes print one `error:` line and exit with status 2.
"""

from pathlib import Path

from absl import flags

from poolnet_jax import cli, runtime
from poolnet_jax.inference import artifact
from poolnet_jax.models import ModelSpec
from poolnet_jax.weights import pretrained

FLAGS = flags.FlagValues()  # private, so the tools can share one process
flags.DEFINE_string(
  "sizes",
  ",".join(f"{h}x{w}" for h, w in artifact.DEFAULT_SIZES),
  "Input sizes HEIGHTxWIDTH, comma separated: one artifact each.",
  flag_values=FLAGS,
)
flags.DEFINE_string(
  "platforms",
  ",".join(artifact.DEFAULT_PLATFORMS),
  f"jax format: platforms the artifacts run on, among {', '.join(artifact.PLATFORMS)}.",
  flag_values=FLAGS,
)
flags.DEFINE_enum(
  "format",
  "jax",
  list(artifact.FORMATS),
  "jax (jax.export) or onnx (needs jax2onnx).",
  flag_values=FLAGS,
)
flags.DEFINE_integer(
  "batch", 1, "onnx format: the fixed batch size.", lower_bound=1, flag_values=FLAGS
)
flags.DEFINE_bool("overwrite", False, "Replace an export already in OUT.", flag_values=FLAGS)
cli.define_verbose(FLAGS)
USAGE = (
  "usage: python -m poolnet_jax.cli.export CHECKPOINT OUT [--sizes 300x400,320x320] "
  "[--platforms cpu,cuda] [--format jax|onnx] [--batch N] [--overwrite]"
)


def check_target(out, overwrite):
  """OUT must be new, an empty folder, or (with --overwrite) a folder."""
  out = Path(out)
  if out.exists() and not out.is_dir():
    raise cli.UserError(f"OUT {out} is a file, not a folder")
  if out.is_dir() and any(out.iterdir()) and not overwrite:
    raise cli.UserError(f"OUT {out} is not empty; pass --overwrite to replace an export there")
  cli.check_writable_folder(out, "OUT")


@cli.reports_user_errors(FLAGS)
def main(argv):
  """`python -m poolnet_jax.cli.export CHECKPOINT OUT`; returns the exit code (0, or 2)."""
  args = cli.parse_flags(FLAGS, argv)
  if len(args) != 2:
    raise cli.UserError(USAGE)
  checkpoint, out = args
  try:
    sizes = artifact.parse_sizes(FLAGS.sizes)
    platforms = artifact.check_platforms(p.strip() for p in FLAGS.platforms.split(","))
    if FLAGS.format == "onnx":
      artifact.require_jax2onnx()  # before reading a large checkpoint
  except artifact.ExportError as error:
    raise cli.UserError(str(error)) from error
  check_target(out, FLAGS.overwrite)
  runtime.apply_xla_defaults()
  runtime.enable_compilation_cache()
  model, variables = pretrained.load_pretrained(checkpoint)
  try:
    index = artifact.export_directory(
      model, variables, out, sizes, platforms, FLAGS.format, FLAGS.batch, source=checkpoint
    )
  except artifact.ExportError as error:
    raise cli.UserError(str(error)) from error
  where = ", ".join(index["platforms"]) if index["platforms"] else f"batch {FLAGS.batch}"
  for entry in index["sizes"]:
    checked = entry.get("onnxruntime_max_difference", "")
    if checked != "":
      checked = (
        "; onnxruntime not installed, not checked"
        if checked is None
        else f"; onnxruntime vs JAX max difference {checked:.1e}"
      )
    print(
      f"{Path(out) / entry['file']}: {index['format']} ({where}), {entry['bytes']:,} bytes, "
      f"{entry['export_seconds']} s{checked}"
    )
  print(f"{Path(out) / artifact.INDEX_FILE}: PoolNet {ModelSpec.of(model)} from {checkpoint}")
  return 0


if __name__ == "__main__":
  cli.run_main(main, FLAGS, __doc__)
