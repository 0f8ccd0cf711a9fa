"""Trains PoolNet. `python train.py` runs the built-in demo (configs/demo.py).

Also installed as `poolnet-train`; the code is `poolnet_jax/train_main.py`.

    python train.py --config configs/resnet50.py --workdir runs/r50 --config.batch_size=8

The console shows the progress bar, the validation results and warnings; every
log line, the libraries' included, goes to `<workdir>/train.log`. A mistake (a
config file or key that does not exist, an impossible value, a damaged or
mismatched checkpoint, an unknown dataset) is one `error:` line and exit status 2;
`--verbose` adds the traceback.

Multi-host: pass --coordinator_address, --num_processes and --process_id (or let
`jax.distributed.initialize` find them in the cluster's environment with
--distributed).
"""

# The command line lives in the package (poolnet_jax/train_main.py) so that the installed
# `poolnet-train` is the same program; tests parse flags through these names.
from poolnet_jax.train_main import (DEFAULT_CONFIG, FLAGS, define_flags, main,  # noqa: F401
                                    parse_flags, run)

if __name__ == "__main__":
  run()
