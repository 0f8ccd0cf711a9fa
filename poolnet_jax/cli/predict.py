"""Saliency (or edge) maps for any images: files, folders and globs.

    python -m poolnet_jax.cli.predict --checkpoint converted/ photos/ 'extra/*.jpg' --output maps/
    python -m poolnet_jax.cli.predict --checkpoint final.pth photo.jpg --output maps/ --cutout --overlay
    python -m poolnet_jax.cli.predict --checkpoint edge_model/ photos/ --output edges/ --task edge

Writes `<stem>.png`, an 8-bit map at the image's own size, upright as its EXIF
orientation tag says (images found in a folder keep their sub-folder), with `--cutout` `<stem>_cutout.png` (RGBA, the
map as alpha) and with `--overlay` `<stem>_overlay.png`. `--task edge` (edge
models) runs the original's edge test: scales 0.5, 1, 1.5 and 2, at each the
mean of the fused and first three side outputs, min-max normalised, resized
back and averaged; written as 255 * (1 - edge), dark edges on white.

Images below the network's minimum size are upsampled to it (aspect kept), and
images whose longest side exceeds `--max_size` (default 1024; 0: no limit) are
scaled down to it (antialiased, aspect kept); either way the map is resized
back to the image's size and the log says so. `--size_multiple M` rounds each
run size to a multiple of M (aspect kept as closely as rounding allows; never
below the minimum): fewer distinct shapes, fewer compiled programs; 0, the
default, runs each image at its exact size. Images of one run size run as one
batch (at most about max_size^2 pixels per batch; a short last batch is padded
to the full size); each run shape compiles once per process, JAX's persistent
compilation cache is on (`runtime.enable_compilation_cache`), and the last line
says how many programs were compiled and in how long.

Nothing is overwritten that is not predict's own: before any work, every output
path is planned, and outputs that would land on an input file or on each other
(two inputs with the same stem, a map named like another input's cutout, ...)
are refused with one error listing them (exit 2, nothing written). Unreadable
images and images that cannot run (out of memory included) are reported and
skipped, the others finish; the exit code is then 1. Mistakes (a missing
checkpoint, a training workdir as checkpoint, an output folder that is a file
or read-only) print one `error:` line and exit 2; `--verbose` adds the traceback.

The library underneath: `poolnet_jax.inference.predictor` (Predictor, predict_files).
"""

import sys

from absl import flags
import jax
import tqdm

from poolnet_jax import cli, runtime
from poolnet_jax.inference import predictor as predictor_lib
from poolnet_jax.inference.paths import check_outputs, expand_inputs, output_paths, write_outputs
from poolnet_jax.runtime import compilation
from poolnet_jax.weights import pretrained

DEFAULT_MAX_SIZE = 1024  # full ResNet-50, 6000x4000 photo: see docs/inference.md

FLAGS = flags.FlagValues()  # private, so predict and evaluate can share one process
flags.DEFINE_string(
  "checkpoint",
  None,
  "Converted or trained model directory, or an original .pth file.",
  flag_values=FLAGS,
)
flags.DEFINE_string("output", "predictions", "Folder for the maps.", flag_values=FLAGS)
flags.DEFINE_enum(
  "task",
  "saliency",
  ["saliency", "edge"],
  "edge: the original's multi-scale edge test (edge models only).",
  flag_values=FLAGS,
)
flags.DEFINE_bool(
  "cutout", False, "Also write the image cut out by its map (RGBA).", flag_values=FLAGS
)
flags.DEFINE_bool(
  "overlay", False, "Also write the map laid over the image in red.", flag_values=FLAGS
)
flags.DEFINE_integer(
  "batch_size", 4, "Images of one run size run together.", lower_bound=1, flag_values=FLAGS
)
flags.DEFINE_integer(
  "max_size",
  DEFAULT_MAX_SIZE,
  "Longest side the network sees: larger "
  "images are scaled down (aspect kept) and their maps resized back; 0: no "
  "limit. For --task edge, the scale-1 image.",
  lower_bound=0,
  flag_values=FLAGS,
)
cli.define_precision(FLAGS)
cli.define_size_multiple(FLAGS)
cli.define_verbose(FLAGS)


def write_maps(
  predictor, items, output, task="saliency", batch_size=4, cutout=False, overlay=False
):
  """Writes a map for each (path, output stem) under `output`; returns {path: reason} of the
  inputs that failed (unreadable, could not run, could not be written). Call check_outputs
  first."""
  stems, failed = dict(items), {}
  with tqdm.tqdm(total=len(items), unit="img", desc=task) as bar:
    for path, image, result in predictor_lib.predict_files(
      predictor, list(stems), task, batch_size, failed
    ):
      bar.update()
      if result is None:
        continue
      target = output_paths(stems[path], output)[0]
      levels = 1.0 - result if task == "edge" else result  # edges: dark on white
      try:
        write_outputs(target, image, levels, cutout, overlay)
      except OSError as error:
        failed[path] = f"cannot write {error.filename or target}: {error.strerror or error}"
  return failed


# Command line.


@cli.reports_user_errors(FLAGS)
def main(argv):
  """`python -m poolnet_jax.cli.predict`; argv = [program, flags and inputs...].

  Returns the exit code: 0, 1 if an input failed, 2 for a mistake (nothing written).
  """
  inputs = cli.parse_flags(FLAGS, argv)
  if not FLAGS.checkpoint:
    raise flags.ValidationError("--checkpoint is required")
  if FLAGS.task == "edge" and (FLAGS.cutout or FLAGS.overlay):
    raise flags.ValidationError("--cutout and --overlay apply to saliency maps, not --task edge")
  cli.check_writable_folder(FLAGS.output, "--output")
  items, unmatched = expand_inputs(inputs, exclude=FLAGS.output)
  for item in unmatched:
    print(f"warning: {item} matches no image file", file=sys.stderr)
  if not items:
    raise cli.UserError(f"no images found in {' '.join(inputs) or '(no inputs given)'}")
  check_outputs(items, FLAGS.output, FLAGS.cutout, FLAGS.overlay)
  runtime.apply_xla_defaults()
  runtime.enable_compilation_cache()
  compiled = compilation.snapshot()
  model, variables = pretrained.load_pretrained(FLAGS.checkpoint)
  if FLAGS.task == "edge" and not model.edge:
    raise cli.UserError(
      f"{FLAGS.checkpoint} is a saliency-only model; --task edge needs an edge model"
    )
  predictor = predictor_lib.Predictor(
    runtime.with_conv_from_environment(model), variables, FLAGS.max_size, FLAGS.size_multiple
  )
  with jax.default_matmul_precision(FLAGS.precision):
    failed = write_maps(
      predictor, items, FLAGS.output, FLAGS.task, FLAGS.batch_size, FLAGS.cutout, FLAGS.overlay
    )
  for path, reason in failed.items():
    print(f"failed: {path}: {reason}", file=sys.stderr)
  print(
    f"{len(items) - len(failed)} of {len(items)} images written to {FLAGS.output}"
    + (f"; {len(failed)} failed" if failed else "")
    + (f"; {len(unmatched)} inputs matched nothing" if unmatched else "")
  )
  print(compilation.summary(since=compiled))
  return 1 if failed or unmatched else 0


if __name__ == "__main__":
  cli.run_main(main, FLAGS, __doc__)
