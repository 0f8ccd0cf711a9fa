"""The field's measures for a model over TFDS test sets, or for saved maps against ground truth.

    python -m poolnet_jax.cli.evaluate --checkpoint DIR --datasets ecssd,duts_te [--out results/]
    python -m poolnet_jax.cli.evaluate --pred_dir maps/ --gt_dir ECSSD/ground_truth_mask --name ecssd

Datasets are TFDS names, each meaning its test split (`ecssd`, `pascal_s`,
`dut_omron`, `hku_is`, `sod`, `duts`; `duts_te` is `duts:test`; configs as
in `synthetic_salient/small`), or `name:split`. A real set not built yet in
`--data_dir` is built from `--manual_dir`; synthetic ones are built on the spot.
The model runs at each image's native size, batch 1 (the paper's protocol);
`--size` runs it at a fixed size and `--size_multiple M` at the native size
rounded to multiples of M (fewer compiled shapes), maps resized back to each
image's size; the last line on stderr says how many programs were compiled
and in how long. Saved maps are
matched to ground truth by file stem (unmatched files are reported); a map of
another size with its ground truth's aspect ratio (each side within one pixel
of one common scale) is resized to its size, bilinear by OpenCV's rule as the
SOD toolkits do, with one warning naming those maps; a map of another aspect
ratio (turned by 90 degrees, cropped) is an error naming it, before any
scoring, or with `--skip_mismatched` is left out, counted and named in every
output (`skipped_mismatched`).

Measures (`poolnet_jax.inference.metrics`, pysodmetrics underneath): maxF, meanF, adpF
(beta^2 = 0.3), MAE, Sm, maxE, meanE, adpE, wF. `--protocol salmetric` uses the
authors' evaluator's rules for maxF, meanF, MAE and the curves, for numbers
comparable with the paper's table. `--format` table, json (one object per
dataset and line) or csv goes to stdout; `--out DIR` also gets
results.{txt,json,csv}, per dataset `<dataset>_pr.png`, `<dataset>_fmeasure.png`
and `<dataset>_curves.csv`, and with `--save_maps` the maps in `maps/<dataset>/`.

Ground truths stored as 0/1 are read as 0/255 (a warning names them); those
without a foreground pixel (scored 0 by the field's convention) are counted and
named in every output (`background_only`). Mistakes (an unknown dataset, a
missing checkpoint, an --out that is a file or read-only, the same folder as
--pred_dir and --gt_dir) print one `error:` line and exit 2, before any work;
`--verbose` adds the traceback.

The library underneath: `predictor_lib.evaluate_model` (a model over a source),
`saved_maps.evaluate_folders`, `reports` (formats, files), `data.datasets`.
"""

import os
from pathlib import Path
import sys

from absl import flags
import jax

from poolnet_jax import cli, runtime
from poolnet_jax.data.datasets import dataset_builder, load_dataset
from poolnet_jax.errors import UserError
from poolnet_jax.inference import predictor as predictor_lib, reports, saved_maps
from poolnet_jax.inference import metrics as metrics_lib
from poolnet_jax.runtime import compilation
from poolnet_jax.weights import pretrained

FLAGS = flags.FlagValues()  # private, so predict and evaluate can share one process
flags.DEFINE_string(
  "checkpoint", None, "Model directory (converted or trained) or original .pth.", flag_values=FLAGS
)
flags.DEFINE_list("datasets", [], "Comma-separated TFDS names or name:split.", flag_values=FLAGS)
cli.define_dataset_dirs(FLAGS)
flags.DEFINE_string(
  "size",
  None,
  "Fixed inference size, H,W or one number; default: each image's own size.",
  flag_values=FLAGS,
)
cli.define_precision(FLAGS)
cli.define_size_multiple(FLAGS)
flags.DEFINE_integer(
  "max_images",
  0,
  "Evaluate only the first N images of each set (0: all).",
  lower_bound=0,
  flag_values=FLAGS,
)
flags.DEFINE_string(
  "pred_dir", None, "Folder of saved maps (instead of a model).", flag_values=FLAGS
)
flags.DEFINE_string(
  "gt_dir", None, "Folder of ground-truth masks for --pred_dir.", flag_values=FLAGS
)
flags.DEFINE_string(
  "name", None, "Row name for --pred_dir (default: the gt folder's name).", flag_values=FLAGS
)
flags.DEFINE_bool(
  "skip_mismatched",
  False,
  "With --pred_dir: leave out (and list) maps whose aspect ratio differs from their ground "
  "truth's, instead of refusing them.",
  flag_values=FLAGS,
)
cli.define_protocol(FLAGS, metrics_lib.PROTOCOLS)
flags.DEFINE_enum(
  "format", "table", ["table", "json", "csv"], "Output format on stdout.", flag_values=FLAGS
)
flags.DEFINE_string("out", None, "Folder for the results, curves and maps.", flag_values=FLAGS)
flags.DEFINE_bool(
  "save_maps", False, "Save the 8-bit maps under --out/maps/<dataset>/.", flag_values=FLAGS
)
cli.define_verbose(FLAGS)


def parse_size(text):
  """'320' -> (320, 320); '288,384' -> (288, 384); None or '' -> None."""
  if not text:
    return None
  try:
    size = tuple(int(n) for n in text.replace("x", ",").split(","))
  except ValueError:
    size = ()
  if len(size) == 1:
    size = size * 2
  if len(size) != 2 or min(size) < 1:
    raise flags.ValidationError(f"--size must be H,W or one number, got {text!r}")
  return size


def _check_flags(rest):
  if rest:
    raise flags.ValidationError(f"unexpected arguments {' '.join(rest)}")
  with_model = bool(FLAGS.checkpoint or FLAGS.datasets)
  with_folders = bool(FLAGS.pred_dir or FLAGS.gt_dir)
  if with_model == with_folders:
    raise flags.ValidationError(
      "give either --checkpoint and --datasets (a model) or --pred_dir and --gt_dir (saved maps)"
    )
  if with_model and not (FLAGS.checkpoint and FLAGS.datasets):
    raise flags.ValidationError("--checkpoint and --datasets go together")
  if with_folders and not (FLAGS.pred_dir and FLAGS.gt_dir):
    raise flags.ValidationError("--pred_dir and --gt_dir go together")
  if FLAGS.save_maps and not (FLAGS.out and with_model):
    raise flags.ValidationError("--save_maps needs --out and a model")
  if FLAGS.skip_mismatched and not with_folders:
    raise flags.ValidationError("--skip_mismatched needs --pred_dir and --gt_dir")
  if FLAGS.size_multiple and not with_model:
    raise flags.ValidationError("--size_multiple needs a model (--checkpoint and --datasets)")
  if FLAGS.size_multiple and FLAGS.size:
    raise flags.ValidationError("--size and --size_multiple exclude each other")
  if FLAGS.manual_dir and not os.path.isdir(FLAGS.manual_dir):
    raise UserError(f"--manual_dir {FLAGS.manual_dir}: no such folder")
  if FLAGS.out:
    cli.check_writable_folder(FLAGS.out, "--out")
  return parse_size(FLAGS.size)


def _evaluate_folders_cli(evaluated, skipped):
  dataset = FLAGS.name or Path(FLAGS.gt_dir.rstrip("/\\")).name or "folder"
  metrics, problems = saved_maps.evaluate_folders(
    FLAGS.pred_dir, FLAGS.gt_dir, FLAGS.protocol, dataset, FLAGS.skip_mismatched
  )
  for key, what in (
    ("resized", "maps of another size than their ground truth, with its aspect ratio, resized"),
    ("mismatched", "maps of another aspect ratio than their ground truth skipped"),
  ):
    if problems[key]:
      print(
        f"warning: {len(problems[key])} {what}: {saved_maps.size_list(problems[key])} "
        "(width x height)",
        file=sys.stderr,
      )
  if FLAGS.skip_mismatched:
    skipped[dataset] = [os.path.basename(path) for path in problems["mismatched"]]
  for key, what in (
    ("unmatched_maps", "maps without ground truth"),
    ("unmatched_gts", "ground truths without a map"),
  ):
    if problems[key]:
      names = ", ".join(os.path.basename(p) for p in problems[key][:10])
      more = f" and {len(problems[key]) - 10} more" if len(problems[key]) > 10 else ""
      print(f"warning: {len(problems[key])} {what} (left out): {names}{more}", file=sys.stderr)
  for reason in problems["failed"].values():
    print(f"failed: {reason}", file=sys.stderr)
  if len(metrics):
    evaluated[dataset] = metrics
  return len(problems["failed"]) + (0 if len(metrics) else 1)


def _evaluate_model_cli(evaluated, size):
  for spec in FLAGS.datasets:  # every name checked before any work
    dataset_builder(spec, FLAGS.data_dir, FLAGS.manual_dir)
  model, variables = pretrained.load_pretrained(FLAGS.checkpoint)
  if size and min(size) < model.min_input_size():
    raise UserError(
      f"--size {FLAGS.size} is below the network's minimum input size {model.min_input_size()}"
    )
  failures = 0
  for spec in FLAGS.datasets:
    try:
      source = load_dataset(spec, FLAGS.data_dir, FLAGS.manual_dir)
    except (ValueError, FileNotFoundError) as error:  # a build that failed: the others go on
      print(f"error: {error}", file=sys.stderr)
      failures += 1
      continue
    map_dir = os.path.join(FLAGS.out, "maps", reports.file_label(spec)) if FLAGS.save_maps else None
    with jax.default_matmul_precision(FLAGS.precision):
      evaluated[spec] = predictor_lib.evaluate_model(
        runtime.with_conv_from_environment(model),
        variables,
        source,
        size,
        FLAGS.max_images,
        FLAGS.protocol,
        map_dir,
        progress=spec,
        size_multiple=FLAGS.size_multiple,
      )
  return failures


def _warn_scaled(dataset, metrics, listed=20):
  names = metrics.scaled_gts
  if names:
    more = f" and {len(names) - listed} more" if len(names) > listed else ""
    print(
      f"warning: {dataset}: {len(names)} ground truths stored as 0/1 were read as 0/255: "
      f"{', '.join(names[:listed])}{more}",
      file=sys.stderr,
    )


@cli.reports_user_errors(FLAGS)
def main(argv):
  """`python -m poolnet_jax.cli.evaluate`; argv = [program, flags...]. Returns the exit code:
  0, 1 if a set or an image failed, 2 for a mistake."""
  size = _check_flags(cli.parse_flags(FLAGS, argv))
  runtime.apply_xla_defaults()
  runtime.enable_compilation_cache()
  compiled = compilation.snapshot()
  evaluated, skipped = {}, {}
  failures = (
    _evaluate_folders_cli(evaluated, skipped)
    if FLAGS.pred_dir
    else _evaluate_model_cli(evaluated, size)
  )
  for dataset, metrics in evaluated.items():
    _warn_scaled(dataset, metrics)
  rows = [reports.result_row(d, metrics, skipped.get(d)) for d, metrics in evaluated.items()]
  if rows:
    print(reports.format_results(rows, FLAGS.format))
  if FLAGS.out and rows:
    reports.write_report(FLAGS.out, rows, {d: m.curves() for d, m in evaluated.items()})
    print(f"results and curves written to {FLAGS.out}", file=sys.stderr)
  if not FLAGS.pred_dir:  # stdout holds the results only
    print(compilation.summary(since=compiled), file=sys.stderr)
  return 1 if failures else 0


if __name__ == "__main__":
  cli.run_main(main, FLAGS, __doc__)
