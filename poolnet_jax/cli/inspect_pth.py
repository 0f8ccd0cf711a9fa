"""What a PyTorch `.pth` checkpoint holds, without torch.

    python -m poolnet_jax.cli.inspect_pth final.pth [--json]

Prints the tensors (names, shapes, dtypes in file order), the PoolNet variant
they match, or the nearest one and what differs (missing, unexpected and
wrong-shape names). The reader is the converter's: a pickle that asks for
anything a state_dict never needs is refused before it can run, and that, like
a file that is no checkpoint, is one `error:` line and exit status 2. Exit
status 1: the file is a readable checkpoint of no PoolNet variant.
"""

import json

from absl import flags

from poolnet_jax import cli
from poolnet_jax.weights.inspector import format_text, inspect_checkpoint

FLAGS = flags.FlagValues()  # private, so the tools can share one process
flags.DEFINE_bool("json", False, "Print the report as JSON.", flag_values=FLAGS)
cli.define_verbose(FLAGS)
NO_VARIANT = 1


@cli.reports_user_errors(FLAGS)
def main(argv):
  """`python -m poolnet_jax.cli.inspect_pth FILE.pth [--json]`; returns the exit code."""
  args = cli.parse_flags(FLAGS, argv)
  if len(args) != 1:
    raise cli.UserError("usage: python -m poolnet_jax.cli.inspect_pth FILE.pth [--json]")
  report = inspect_checkpoint(args[0])
  print(json.dumps(report.as_dict(), indent=2) if FLAGS.json else format_text(report))
  return 0 if report.matches else NO_VARIANT


if __name__ == "__main__":
  cli.run_main(main, FLAGS, __doc__)
