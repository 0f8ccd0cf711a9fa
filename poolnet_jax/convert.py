"""Converts an original PoolNet `.pth` into the project's format.

    python -m poolnet_jax.convert final.pth converted/ [--name resnet50_edge] [--overwrite]

Then `model, variables = poolnet_jax.load_pretrained("converted/")`.

The destination must be new or empty; `--overwrite` replaces a converted model
there (its `poolnet.json` and `variables/`, nothing else) and no other folder's
contents. Mistakes (a missing file, a .pth that is not a PoolNet, a
destination in the way) print one `error:` line and exit with status 2.
"""

from absl import flags
import jax

from poolnet_jax import cli, pretrained
from poolnet_jax.models import variant_name

FLAGS = flags.FlagValues()  # private, so the tools can share one process
flags.DEFINE_string("name", None, "Variant (resnet50, vgg16, resnet50_edge, vgg16_edge); "
                    "detected from the tensor names when omitted.", flag_values=FLAGS)
flags.DEFINE_bool("overwrite", False, "Replace a converted model already in DST_DIR.",
                  flag_values=FLAGS)
cli.define_verbose(FLAGS)


@cli.reports_user_errors(FLAGS)
def main(argv):
  """`python -m poolnet_jax.convert SRC.pth DST_DIR`; returns the exit code (0, or 2)."""
  args = cli.parse_flags(FLAGS, argv)
  if len(args) != 2:
    raise cli.UserError("usage: python -m poolnet_jax.convert SRC.pth DST_DIR [--name NAME] "
                        "[--overwrite]")
  src, dst = args
  pretrained.check_save_target(dst, FLAGS.overwrite)  # before reading a large file
  cli.check_writable_folder(dst, "destination")
  model, variables = pretrained.load_torch_checkpoint(src, FLAGS.name)
  name = variant_name(model)
  pretrained.save_pretrained(dst, name, variables, overwrite=FLAGS.overwrite)
  params = sum(x.size for x in jax.tree_util.tree_leaves(variables["params"]))
  print(f"{src}: PoolNet {name}, {params:,} parameters -> {dst}")
  return 0


if __name__ == "__main__":
  cli.run_main(main, FLAGS, __doc__)
