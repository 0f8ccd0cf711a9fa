"""Converts an original PoolNet `.pth` into the project's format.

    python -m poolnet_jax.convert final.pth converted/ [--name resnet50_edge]

Then `model, variables = poolnet_jax.load_pretrained("converted/")`.
"""

import sys

from absl import app, flags
import jax

from poolnet_jax import pretrained
from poolnet_jax.models import variant_name
from poolnet_jax.torch_io.mapping import CheckpointMismatch
from poolnet_jax.torch_io.pth import PthError

flags.DEFINE_string("name", None, "Variant (resnet50, vgg16, resnet50_edge, vgg16_edge); "
                    "detected from the tensor names when omitted.")
FLAGS = flags.FLAGS


def main(argv):
  if len(argv) != 3:
    raise app.UsageError("usage: python -m poolnet_jax.convert SRC.pth DST_DIR [--name NAME]")
  src, dst = argv[1:]
  try:
    model, variables = pretrained.load_torch_checkpoint(src, FLAGS.name)
  except (PthError, CheckpointMismatch, OSError) as error:
    print(f"error: {error}", file=sys.stderr)
    return 1
  name = variant_name(model)
  pretrained.save_pretrained(dst, name, variables)
  params = sum(x.size for x in jax.tree_util.tree_leaves(variables["params"]))
  print(f"{src}: PoolNet {name}, {params:,} parameters -> {dst}")
  return 0


if __name__ == "__main__":
  app.run(main)
