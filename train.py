"""Trains PoolNet. `python train.py` runs the built-in demo (configs/demo.py).

    python train.py --config configs/resnet50.py --workdir runs/r50 --config.batch_size=8

Multi-host: pass --coordinator_address, --num_processes and --process_id (or let
`jax.distributed.initialize` find them in the cluster's environment with
--distributed).
"""

from absl import app, flags, logging
import jax
from ml_collections import config_flags

from poolnet_jax import runtime
from poolnet_jax.train import loop

config_flags.DEFINE_config_file("config", "configs/demo.py", "Training configuration file.",
                                lock_config=True)
flags.DEFINE_string("workdir", "runs/demo", "Checkpoints, logs and the best model go here.")
flags.DEFINE_bool("distributed", False, "Call jax.distributed.initialize() (cluster auto-detect).")
flags.DEFINE_string("coordinator_address", None, "host:port of process 0 (multi-host).")
flags.DEFINE_integer("num_processes", None, "Number of processes (multi-host).")
flags.DEFINE_integer("process_id", None, "This process's index (multi-host).")
FLAGS = flags.FLAGS


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  runtime.apply_xla_defaults()
  runtime.enable_compilation_cache()
  if not FLAGS.config.conv and runtime.conv_from_environment():
    FLAGS.config.conv = runtime.conv_from_environment()
  if FLAGS.coordinator_address or FLAGS.distributed:
    jax.config.update("jax_cpu_collectives_implementation", "gloo")  # CPU hosts; GPU/TPU unaffected
    jax.distributed.initialize(FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id)
  logging.info("process %d of %d, %d local devices", jax.process_index(), jax.process_count(),
               jax.local_device_count())
  with jax.default_matmul_precision(FLAGS.config.matmul_precision):
    loop.train_and_evaluate(FLAGS.config, FLAGS.workdir)


if __name__ == "__main__":
  app.run(main)
