"""What the command-line tools share: private flags, and ordinary mistakes as one line.

    FLAGS = flags.FlagValues()
    cli.define_verbose(FLAGS)

    @cli.reports_user_errors(FLAGS)
    def main(argv):  # returns the exit code
      args = cli.parse_flags(FLAGS, argv)
      ...

    if __name__ == "__main__":
      cli.run_main(main, FLAGS, __doc__)

A mistake of the user's (`USER_ERRORS`: a missing or wrong checkpoint, a bad
flag, an output folder that is a file or read-only, ...) is printed as one
`error: ...` line on stderr and the exit status is 2; `--verbose` also prints
the traceback. Anything else is a bug and keeps its traceback.
"""

import functools
from pathlib import Path
import sys
import tempfile
import traceback

from absl import app, flags

from poolnet_jax import runtime
from poolnet_jax.errors import UserError

HELP_FLAGS = ("-h", "-?", "--help", "--helpshort", "--helpfull")
USAGE_ERROR = 2


USER_ERRORS = (
  UserError,  # PthError, CheckpointMismatch and the config's, checkpoints' and data's
  flags.Error,
  FileNotFoundError,
  FileExistsError,
  PermissionError,
  NotADirectoryError,
  IsADirectoryError,
)


def message(error):
  """One line for an error: OS errors as 'path: reason', others as their text."""
  if isinstance(error, OSError) and error.strerror and error.filename:
    return f"{error.filename}: {error.strerror}"
  return str(error) or type(error).__name__


def define_verbose(flag_values):
  flags.DEFINE_bool(
    "verbose",
    False,
    "Print the traceback of an error, not only its message.",
    flag_values=flag_values,
  )


def define_protocol(flag_values, protocols):
  """--protocol: how the measures are computed (inference/metrics.py PROTOCOLS)."""
  flags.DEFINE_enum(
    "protocol",
    "pysodmetrics",
    list(protocols),
    "pysodmetrics: today's toolkits; salmetric: the PoolNet authors' evaluator.",
    flag_values=flag_values,
  )


def define_precision(flag_values):
  """--precision: jax.default_matmul_precision of the run, "highest" (true float32) by default."""
  flags.DEFINE_enum(
    "precision",
    "highest",
    list(runtime.PRECISIONS),
    "Matrix product / convolution precision (jax.default_matmul_precision): "
    "highest is true float32 (the converter's parity); default lets GPUs use "
    "TF32 and TPUs bf16 passes.",
    flag_values=flag_values,
  )


def define_size_multiple(flag_values):
  """--size_multiple: the run sizes of native-size inference (inference/predictor.py)."""
  flags.DEFINE_integer(
    "size_multiple",
    0,
    "Round each image's run size to a multiple of this (fewer compiled shapes; the maps "
    "still come back at each image's own size); 0: exact native sizes, the paper's protocol.",
    lower_bound=0,
    flag_values=flag_values,
  )


def define_dataset_dirs(flag_values):
  """--data_dir and --manual_dir of the TFDS datasets a command reads (data/datasets.py)."""
  flags.DEFINE_string("data_dir", None, "TFDS data_dir.", flag_values=flag_values)
  flags.DEFINE_string(
    "manual_dir",
    None,
    "Downloaded archives or folders, to build a dataset that is not built yet.",
    flag_values=flag_values,
  )


def reports_user_errors(flag_values):
  """Decorator for main(argv) -> exit code: USER_ERRORS become `error: ...` and exit 2."""

  def decorate(main):
    @functools.wraps(main)
    def wrapper(argv):
      try:
        return main(argv)
      except USER_ERRORS as error:
        if _verbose(flag_values, argv):
          traceback.print_exc()
        print(f"error: {message(error)}", file=sys.stderr)
        return USAGE_ERROR

    return wrapper

  return decorate


def _verbose(flag_values, argv):
  if "verbose" in flag_values and flag_values["verbose"].present:
    return flag_values["verbose"].value
  return "--verbose" in argv


def parse_flags(flag_values, argv):
  """Parses `flag_values` afresh from argv = [program, ...]; returns the positional arguments."""
  for name in list(flag_values):
    flag_values[name].unparse()  # back to its default
  return flag_values(list(argv))[1:]


def run_main(main, flag_values, doc):
  """app.run for a module with private flags: absl's own flags (--verbosity...) also work."""

  def parser(argv):
    if any(arg in HELP_FLAGS for arg in argv[1:]):
      print(doc.strip() + "\n\nFlags:\n" + flag_values.get_help())
      sys.exit(0)
    return [argv[0]] + flags.FLAGS(argv, known_only=True)[1:]

  app.run(main, flags_parser=parser)


def check_writable_folder(path, what="output folder"):
  """Raises UserError unless `path` is, or can be made, a folder this process can write to.

  Creates nothing: the nearest existing ancestor must be a folder that takes a file.
  """
  path = Path(path)
  existing = path
  while not existing.exists() and existing != existing.parent:
    existing = existing.parent
  if not existing.is_dir():
    raise UserError(f"{what} {path}: {existing} is a file, not a folder")
  try:
    with tempfile.TemporaryFile(dir=existing):
      pass
  except OSError as error:
    raise UserError(
      f"{what} {path}: cannot write in {existing}: {error.strerror or error}"
    ) from error
