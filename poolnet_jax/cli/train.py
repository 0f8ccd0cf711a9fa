"""Training's command line: `poolnet-train` (installed) and `python train.py` (the repository).

    poolnet-train --config poolnet_jax/configs/resnet50.py --workdir runs/r50 --config.batch_size=8

With no `--config` it runs the built-in demo, `poolnet_jax/configs/demo.py`, the same file
in a checkout and in an installed wheel. A config file of your own, anywhere, imports
the defaults as `from poolnet_jax.configs import common`.

The console shows the progress bar, the validation results and warnings; every
log line, the libraries' included, goes to `<workdir>/train.log`. A mistake (a
config file or key that does not exist, an impossible value, a damaged or
mismatched checkpoint, an unknown dataset) is one `error:` line and exit status 2;
`--verbose` adds the traceback.

Multi-host: pass --coordinator_address, --num_processes and --process_id (or let
`jax.distributed.initialize` find them in the cluster's environment with
--distributed). A run that ends well waits for every process, then leaves the cluster
(`jax.distributed.shutdown`) before Python's exit handlers tear the backends down.
"""

import importlib.util
import os
from pathlib import Path
import sys
import traceback

from absl import app, flags, logging
import jax
from jax.experimental import multihost_utils
from ml_collections import config_flags

from poolnet_jax import cli, runtime
from poolnet_jax.train import recipe, logs, loop

PACKAGE_DIR = Path(__file__).resolve().parents[1]  # poolnet_jax/
DEFAULT_CONFIG = str(PACKAGE_DIR / "configs" / "demo.py")
FLAGS = flags.FLAGS


def define_flags(flag_values):
  config_flags.DEFINE_config_file(
    "config",
    DEFAULT_CONFIG,
    "Training configuration file.",
    lock_config=True,
    flag_values=flag_values,
  )
  flags.DEFINE_string(
    "workdir", "runs/demo", "Checkpoints, logs and the best model go here.", flag_values=flag_values
  )
  flags.DEFINE_bool(
    "distributed",
    False,
    "Call jax.distributed.initialize() (cluster auto-detect).",
    flag_values=flag_values,
  )
  flags.DEFINE_string(
    "coordinator_address", None, "host:port of process 0 (multi-host).", flag_values=flag_values
  )
  flags.DEFINE_integer(
    "num_processes", None, "Number of processes (multi-host).", flag_values=flag_values
  )
  flags.DEFINE_integer(
    "process_id", None, "This process's index (multi-host).", flag_values=flag_values
  )
  cli.define_verbose(flag_values)


define_flags(FLAGS)


def parse_flags(argv, flag_values=FLAGS):
  """absl's parsing of argv; a mistake in it is one `error:` line and exit status 2."""
  problem = _config_file_problem(argv)
  if problem is None:
    try:
      return flag_values(argv)
    except Exception as error:  # pylint: disable=broad-except  (config_flags: many types)
      if "--verbose" in argv:
        traceback.print_exc()
      problem = _unknown_override(argv) or _innermost(error)
  print(f"error: {problem}", file=sys.stderr)
  sys.exit(cli.USAGE_ERROR)


def _config_argument(argv):
  """(path, argument or None) of the config file argv names (or the default)."""
  value = DEFAULT_CONFIG
  for index, arg in enumerate(argv):
    if arg in ("--config", "-config") and index + 1 < len(argv):
      value = argv[index + 1]
    elif arg.startswith(("--config=", "-config=")):
      value = arg.split("=", 1)[1]
  if os.path.exists(value) or ":" not in value:
    return value, None
  path, argument = value.split(":", 1)  # config_flags' path:argument for get_config
  return path, argument


def _config_file_problem(argv):
  """'--config PATH: no such file' if argv names a config file that is not there."""
  path, _ = _config_argument(argv)
  if not os.path.exists(path):
    return f"--config {path}: no such file"
  return None if os.path.isfile(path) else f"--config {path}: not a file"


def _unknown_override(argv):
  """The message of recipe.unknown_override for the config argv names, or None."""
  path, argument = _config_argument(argv)
  try:
    spec = importlib.util.spec_from_file_location("_train_config", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config(*([argument] if argument is not None else []))
  except Exception:  # pylint: disable=broad-except  (then the parser's own message)
    return None
  return recipe.unknown_override(config, argv)


def _innermost(error):
  """absl's message for a flag it could not parse, else the first cause's (a config file's
  own error rather than config_flags' wrapping of it)."""
  if not isinstance(error, flags.Error):
    while error.__cause__ is not None or error.__context__ is not None:
      error = error.__cause__ or error.__context__
  return cli.message(error).strip().splitlines()[0]


def log_file(workdir):
  """train.log in the workdir (train.process<N>.log for the other processes of a run)."""
  if FLAGS.process_id is not None:
    index = FLAGS.process_id
  else:  # no backend is started (its INFO lines would reach the console) unless needed
    index = jax.process_index() if FLAGS.distributed else 0
  return os.path.join(workdir, "train.log" if index == 0 else f"train.process{index}.log")


@cli.reports_user_errors(FLAGS)
def main(argv):
  if len(argv) > 1:
    raise cli.UserError(f"unexpected arguments: {argv[1:]}")
  runtime.apply_xla_defaults()
  runtime.enable_compilation_cache()
  if not FLAGS.config.conv and runtime.conv_from_environment():
    FLAGS.config.conv = runtime.conv_from_environment()
  if FLAGS.coordinator_address or FLAGS.distributed:
    jax.config.update("jax_cpu_collectives_implementation", "gloo")  # CPU hosts; GPU/TPU unaffected
    jax.distributed.initialize(FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id)
  if os.path.exists(FLAGS.workdir) and not os.path.isdir(FLAGS.workdir):
    raise cli.UserError(f"--workdir {FLAGS.workdir} is a file, not a folder")
  path = log_file(FLAGS.workdir)
  logs.route_logs(path, console_sources=(__file__,))
  logging.info(
    "process %d of %d, %d local devices; the full log is in %s",
    jax.process_index(),
    jax.process_count(),
    jax.local_device_count(),
    path,
  )
  with jax.default_matmul_precision(FLAGS.config.matmul_precision):
    loop.train_and_evaluate(FLAGS.config, FLAGS.workdir)
  if jax.process_count() > 1:
    leave_cluster()
  return 0


def leave_cluster():
  """Waits until every process has finished (process 0 validates and saves alone at the
  end), then shuts the cluster down together, while the backends are still up. Left to
  Python's exit handlers, a process that ends first tears down while the others still
  work, and process 0 takes the coordination service with it when it exits: an order
  known to end peers with SIGABRT."""
  index = jax.process_index()
  multihost_utils.sync_global_devices("poolnet_jax: training finished")
  jax.distributed.shutdown()
  logging.info("process %d left the cluster", index)


def run():
  """The console script's entry point (and train.py's)."""
  app.run(main, flags_parser=parse_flags)


if __name__ == "__main__":
  run()
