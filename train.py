"""Trains PoolNet. `python train.py` runs the built-in demo (poolnet_jax/configs/demo.py).

    python train.py --config poolnet_jax/configs/resnet50.py --workdir runs/r50 --config.batch_size=8

The same program as the installed `poolnet-train`: poolnet_jax/cli/train.py says
what it prints, logs and refuses.
"""

# The command line lives in the package (poolnet_jax/cli/train.py) so that the installed
# `poolnet-train` is the same program; tests parse flags through these names.
from poolnet_jax.cli.train import DEFAULT_CONFIG, FLAGS, define_flags, main, parse_flags, run

__all__ = ["DEFAULT_CONFIG", "FLAGS", "define_flags", "main", "parse_flags", "run"]

if __name__ == "__main__":
  run()
