"""The paper's table for the authors' ResNet-50 checkpoints: max F, MAE and S-measure per set
beside the published numbers, and the difference.

    python -m poolnet_jax.cli.paper_table --checkpoint final.pth --edge_checkpoint final_edge.pth \\
        --manual_dir ~/downloads [--datasets ecssd,duts_te=duts:test] [--out table/]

`--checkpoint` is the model without edge (resnet50), `--edge_checkpoint` the joint model
(resnet50_edge); either or both, as `.pth` (read by the torch-free converter) or converted
folders. `--datasets` (default: all six) are the paper's sets, ecssd, pascal_s, dut_omron,
hku_is, sod and duts_te, each read from the TFDS set of its name (built from `--manual_dir`
as evaluate builds it) or from `KEY=SPEC`, any TFDS spec.

Each set's image count is checked before any scoring against the authors' test lists: ECSSD
1000, PASCAL-S 850, DUT-O 5166 (5168, the whole set, is taken too), HKU-IS 1447 (its test
list), SOD 300, DUTS-TE 5019. A set that is missing, incomplete or of another count is an
error naming it with both counts (all such sets in one message, exit status 2);
`--allow_incomplete` scores the images there are instead and marks the rows (`status`).

Scoring is the evaluate command's (`inference.evaluate_model`): pysodmetrics, each image at
its native size, the map at its mask's size; `--protocol salmetric` follows the authors'
evaluator, which produced the published numbers. The published numbers are the ones on
record here only: max F / MAE of the model with edge. `--format` table, csv or json
goes to stdout; `--out DIR` also gets paper_table.{txt,csv,json}.
"""

import contextlib
import os
import sys

from absl import flags
import jax

from poolnet_jax import cli, runtime
from poolnet_jax.data.datasets import dataset_builder
from poolnet_jax.errors import UserError
from poolnet_jax.inference import paper
from poolnet_jax.inference import metrics as metrics_lib
from poolnet_jax.runtime import compilation

FLAGS = flags.FlagValues()  # private, so the tools can share one process
flags.DEFINE_string(
  "checkpoint", None, "PoolNet-ResNet50 without edge: .pth or converted folder.", flag_values=FLAGS
)
flags.DEFINE_string(
  "edge_checkpoint",
  None,
  "PoolNet-ResNet50 with edge (joint training): .pth or converted folder.",
  flag_values=FLAGS,
)
flags.DEFINE_list(
  "datasets",
  list(paper.SETS),
  "The paper's sets (ecssd, pascal_s, dut_omron, hku_is, sod, duts_te), each KEY or KEY=SPEC "
  "(a TFDS spec holding it).",
  flag_values=FLAGS,
)
cli.define_dataset_dirs(FLAGS)
flags.DEFINE_bool(
  "allow_incomplete",
  False,
  "Score sets with fewer (or other) images than the authors' lists, marking their rows, "
  "instead of stopping.",
  flag_values=FLAGS,
)
cli.define_protocol(FLAGS, metrics_lib.PROTOCOLS)
cli.define_size_multiple(FLAGS)
cli.define_precision(FLAGS)
flags.DEFINE_enum(
  "format", "table", ["table", "csv", "json"], "Output format on stdout.", flag_values=FLAGS
)
flags.DEFINE_string("out", None, "Folder for paper_table.{txt,csv,json}.", flag_values=FLAGS)
cli.define_verbose(FLAGS)


def _checked_flags(rest):
  if rest:
    raise flags.ValidationError(f"unexpected arguments {' '.join(rest)}")
  checkpoints = {"resnet50": FLAGS.checkpoint, "resnet50_edge": FLAGS.edge_checkpoint}
  checkpoints = {variant: path for variant, path in checkpoints.items() if path}
  if not checkpoints:
    raise flags.ValidationError("give --checkpoint, --edge_checkpoint or both")
  sets = paper.parse_sets(FLAGS.datasets)
  if FLAGS.manual_dir and not os.path.isdir(FLAGS.manual_dir):
    raise UserError(f"--manual_dir {FLAGS.manual_dir}: no such folder")
  if FLAGS.out:
    cli.check_writable_folder(FLAGS.out, "--out")
  return checkpoints, sets


@cli.reports_user_errors(FLAGS)
def main(argv):
  """`python -m poolnet_jax.cli.paper_table`; argv = [program, flags...]. Returns the exit code:
  0, or 2 for a mistake (an incomplete set without --allow_incomplete included)."""
  checkpoints, sets = _checked_flags(cli.parse_flags(FLAGS, argv))
  runtime.apply_xla_defaults()
  runtime.enable_compilation_cache()
  compiled = compilation.snapshot()
  _check_names(sets)
  models, notes = {}, []
  for variant, path in checkpoints.items():  # before any dataset is built
    model, variables, note = paper.load_model(path, variant)
    models[variant] = (runtime.with_conv_from_environment(model), variables)
    if note:
      print(f"warning: {note}", file=sys.stderr)
      notes.append(note)
  with contextlib.redirect_stdout(sys.stderr):  # TFDS's build messages: stdout is the table's
    checks = paper.check_sets(sets, FLAGS.data_dir, FLAGS.manual_dir)
  problems = paper.count_problems(checks)
  if problems and not FLAGS.allow_incomplete:
    raise UserError(
      "not the authors' test sets (--allow_incomplete scores what there is):\n  "
      + "\n  ".join(problems)
    )
  for problem in problems:
    print(f"warning: {problem}", file=sys.stderr)
  with jax.default_matmul_precision(FLAGS.precision):
    rows = paper.score(models, checks, FLAGS.protocol, size_multiple=FLAGS.size_multiple)
  if FLAGS.format == "table":
    print(paper.format_table(rows, notes))
  else:
    print(paper.format_csv(rows) if FLAGS.format == "csv" else paper.format_json(rows))
  if FLAGS.out:
    paper.write(FLAGS.out, rows, notes)
    print(f"paper table written to {FLAGS.out}", file=sys.stderr)
  print(compilation.summary(since=compiled), file=sys.stderr)
  return 0


def _check_names(sets):
  """A spec that names no dataset or config (a typo) is a mistake, before any work; one that is
  only not built (no --manual_dir) is left to the count check, as a missing set."""
  for spec in sets.values():
    try:
      dataset_builder(spec, FLAGS.data_dir, FLAGS.manual_dir)
    except UserError as error:
      if "unknown dataset" in str(error) or "has no config" in str(error):
        raise


if __name__ == "__main__":
  cli.run_main(main, FLAGS, __doc__)
