"""Converts an original PoolNet `.pth` into the project's format.

    python -m poolnet_jax.cli.convert final.pth converted/ [--name resnet50_edge] [--overwrite]
        [--format orbax|safetensors|both]

writes `converted/poolnet.json` and `converted/variables/` (orbax) and
`converted/model.safetensors` (the original's tensor names, float32, the variant
in its header); `--format` picks one of them (default both). Then
`model, variables = poolnet_jax.load_pretrained("converted/")` (or the
`.safetensors` file itself).

The destination must be new or empty; `--overwrite` replaces a converted model
there (its `poolnet.json`, `variables/` and `model.safetensors`, nothing else;
the format not written this time is removed, so no file keeps the old weights)
and no other folder's contents. Mistakes (a missing file, a .pth that is not a
PoolNet, a destination in the way) print one `error:` line and exit with status 2.
"""

from pathlib import Path

from absl import flags
import jax

from poolnet_jax import cli
from poolnet_jax.models import variant_name
from poolnet_jax.weights import pretrained

FLAGS = flags.FlagValues()  # private, so the tools can share one process
flags.DEFINE_string(
  "name",
  None,
  "Variant (resnet50, vgg16, resnet50_edge, vgg16_edge); "
  "detected from the tensor names when omitted.",
  flag_values=FLAGS,
)
flags.DEFINE_bool(
  "overwrite", False, "Replace a converted model already in DST_DIR.", flag_values=FLAGS
)
flags.DEFINE_enum(
  "format",
  "both",
  ["orbax", "safetensors", "both"],
  "What to write in DST_DIR: poolnet.json and variables/ (orbax), model.safetensors, or both.",
  flag_values=FLAGS,
)
cli.define_verbose(FLAGS)


@cli.reports_user_errors(FLAGS)
def main(argv):
  """`python -m poolnet_jax.cli.convert SRC.pth DST_DIR`; returns the exit code (0, or 2)."""
  args = cli.parse_flags(FLAGS, argv)
  if len(args) != 2:
    raise cli.UserError(
      "usage: python -m poolnet_jax.cli.convert SRC.pth DST_DIR [--name NAME] "
      "[--overwrite] [--format orbax|safetensors|both]"
    )
  src, dst = args
  pretrained.check_save_target(dst, FLAGS.overwrite)  # before reading a large file
  cli.check_writable_folder(dst, "destination")
  model, variables = pretrained.load_torch_checkpoint(src, FLAGS.name)
  name = variant_name(model)
  formats = ("orbax", "safetensors") if FLAGS.format == "both" else (FLAGS.format,)
  written = []
  if "orbax" in formats:  # first: save_pretrained refuses a folder holding model.safetensors
    pretrained.save_pretrained(dst, name, variables, overwrite=FLAGS.overwrite)
    written += [pretrained.META_FILE, pretrained.VARIABLES_DIR + "/"]
  if "safetensors" in formats:
    Path(dst).mkdir(parents=True, exist_ok=True)
    pretrained.save_safetensors(Path(dst) / pretrained.SAFETENSORS_FILE, name, variables)
    written.append(pretrained.SAFETENSORS_FILE)
  if FLAGS.overwrite:  # the other format's files hold the replaced model's weights
    pretrained.remove_formats(dst, [f for f in ("orbax", "safetensors") if f not in formats])
  params = sum(x.size for x in jax.tree_util.tree_leaves(variables["params"]))
  print(f"{src}: PoolNet {name}, {params:,} parameters -> {dst} ({', '.join(written)})")
  return 0


if __name__ == "__main__":
  cli.run_main(main, FLAGS, __doc__)
