"""The field's measures for a model over TFDS test sets, or for saved maps against ground truth.

    python -m poolnet_jax.evaluate --checkpoint DIR --datasets ecssd,duts_te [--out results/]
    python -m poolnet_jax.evaluate --pred_dir maps/ --gt_dir ECSSD/ground_truth_mask --name ecssd

Datasets are TFDS names, each meaning its test split (`ecssd`, `pascal_s`,
`dut_omron`, `hku_is`, `sod`, `duts`; `duts_te` is `duts:test`; configs as
in `synthetic_salient/small`), or `name:split`. A real set not built yet in
`--data_dir` is built from `--manual_dir`; synthetic ones are built on the spot.
The model runs at each image's native size, batch 1 (the paper's protocol);
`--size` runs it at a fixed size with the map resized back. Saved maps are
matched to ground truth by file stem (unmatched files are reported) and resized
to its size, bilinear by OpenCV's rule as the SOD toolkits do.

Measures (`poolnet_jax.metrics`, pysodmetrics underneath): maxF, meanF, adpF
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

In Python, e.g. for validation during training:

    metrics = evaluate_model(model, variables, source, size=None, max_images=0)
    metrics.results()  # {"maxF": ..., "MAE": ..., ..., "images": n}
"""

import csv
import difflib
import io
import json
import os
from pathlib import Path
import re
import sys

from absl import flags
import numpy as np
from PIL import Image
import tqdm

from poolnet_jax import cli
from poolnet_jax import image as image_lib
from poolnet_jax import metrics as metrics_lib
from poolnet_jax import plots, pretrained, runtime
from poolnet_jax.cli import UserError
from poolnet_jax.data import decode, files
from poolnet_jax.predict import Predictor, resize

DATASET_ALIASES = {"duts_te": "duts:test", "duts-te": "duts:test"}
BUILT_ON_THE_SPOT = ("synthetic_salient",)

FLAGS = flags.FlagValues()  # private, so predict and evaluate can share one process
flags.DEFINE_string("checkpoint", None, "Model directory (converted or trained) or original "
                    ".pth.", flag_values=FLAGS)
flags.DEFINE_list("datasets", [], "Comma-separated TFDS names or name:split.", flag_values=FLAGS)
flags.DEFINE_string("data_dir", None, "TFDS data_dir.", flag_values=FLAGS)
flags.DEFINE_string("manual_dir", None, "Downloaded archives or folders, to build a dataset "
                    "that is not built yet.", flag_values=FLAGS)
flags.DEFINE_string("size", None, "Fixed inference size, H,W or one number; default: each "
                    "image's own size.", flag_values=FLAGS)
flags.DEFINE_integer("max_images", 0, "Evaluate only the first N images of each set (0: all).",
                     lower_bound=0, flag_values=FLAGS)
flags.DEFINE_string("pred_dir", None, "Folder of saved maps (instead of a model).",
                    flag_values=FLAGS)
flags.DEFINE_string("gt_dir", None, "Folder of ground-truth masks for --pred_dir.",
                    flag_values=FLAGS)
flags.DEFINE_string("name", None, "Row name for --pred_dir (default: the gt folder's name).",
                    flag_values=FLAGS)
flags.DEFINE_enum("protocol", "pysodmetrics", list(metrics_lib.PROTOCOLS),
                  "pysodmetrics: today's toolkits; salmetric: the PoolNet authors' evaluator.",
                  flag_values=FLAGS)
flags.DEFINE_enum("format", "table", ["table", "json", "csv"], "Output format on stdout.",
                  flag_values=FLAGS)
flags.DEFINE_string("out", None, "Folder for the results, curves and maps.", flag_values=FLAGS)
flags.DEFINE_bool("save_maps", False, "Save the 8-bit maps under --out/maps/<dataset>/.",
                  flag_values=FLAGS)
cli.define_verbose(FLAGS)


# Datasets.

def parse_dataset(spec):
  """'ecssd' -> ('ecssd', 'test'); 'duts_te' -> ('duts', 'test'); 'name:split' -> (name, split)."""
  spec = DATASET_ALIASES.get(spec.strip().lower(), spec.strip())
  name, _, split = spec.partition(":")
  if not name:
    raise UserError(f"empty dataset name in {spec!r}")
  return name, split or "test"


def dataset_builder(spec, data_dir=None, manual_dir=None):
  """(TFDS builder, split) of a dataset spec; UserError naming the problem if it cannot be used:
  an unknown name (with the nearest registered ones), an unknown config or split, a real set
  neither built nor buildable (no --manual_dir). Builds nothing."""
  import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
  import poolnet_jax.data  # pylint: disable=import-outside-toplevel,unused-import  (registers)
  name, split = parse_dataset(spec)
  base, _, config = name.partition("/")
  registered = tfds.list_builders(with_community_datasets=False)
  if base not in registered:
    near = difflib.get_close_matches(base, registered + list(DATASET_ALIASES), n=3, cutoff=0.6)
    hint = (f"nearest registered names: {', '.join(near)}" if near else
            f"the saliency sets here: {', '.join(saliency_sets())}")
    raise UserError(f"{spec}: unknown dataset {base!r}; {hint}")
  try:
    builder = tfds.builder(name, data_dir=data_dir)
  except Exception as error:  # tfds raises several types for unknown configs
    configs = [c.name for c in getattr(tfds.builder_cls(base), "BUILDER_CONFIGS", [])]
    if config and config not in configs:
      raise UserError(f"{spec}: {base} has no config {config!r} (it has "
                      f"{', '.join(configs) or 'none registered'})") from error
    raise UserError(f"{spec}: {str(error).splitlines()[0]}") from error
  if (not builder.is_prepared() and base not in BUILT_ON_THE_SPOT and not manual_dir):
    raise UserError(f"{spec}: {name} is not built in {builder.data_dir}; pass --manual_dir "
                    f"with its downloads to build it (or the right --data_dir)")
  if builder.is_prepared() and split not in builder.info.splits:
    raise UserError(f"{spec}: {name} has no split {split!r} (it has "
                    f"{', '.join(sorted(builder.info.splits))})")
  return builder, split


def saliency_sets():
  """Names of the saliency test sets registered here, with the aliases."""
  from poolnet_jax.data.builders import saliency  # pylint: disable=import-outside-toplevel
  return sorted([b.name for b in saliency.BUILDERS] + list(DATASET_ALIASES)[:1]
                + list(BUILT_ON_THE_SPOT))


def load_dataset(spec, data_dir=None, manual_dir=None):
  """The random-access TFDS source of a dataset spec, building it first if need be."""
  import poolnet_jax.data as data_lib  # pylint: disable=import-outside-toplevel
  builder, split = dataset_builder(spec, data_dir, manual_dir)
  data_lib.prepare(builder, manual_dir)
  if split not in builder.info.splits:
    raise UserError(f"{spec}: {builder.name} has no split {split!r} (it has "
                    f"{', '.join(sorted(builder.info.splits))})")
  return builder.as_data_source(split=split)


def _text(name):
  return name.decode("utf-8") if isinstance(name, bytes) else str(name)


# A model over a source.

def predict_maps(model, variables, source, size=None, max_images=0):
  """Yields (name, map (H, W) float in [0, 1] at the image's size, gt (H, W) uint8), batch 1.

  `source[i]` holds "image" (H, W, 3) uint8 and "mask" (H, W, 1) uint8 (a TFDS
  data source or `FolderSource`); `size` = (H', W') runs the network at that
  size, maps resized back; `max_images` > 0 stops after that many.
  """
  predictor = Predictor(model, variables)
  count = min(len(source), max_images) if max_images else len(source)
  for index in range(count):
    example = source[index]
    name = _text(example.get("name", index))
    if "mask" not in example:
      raise ValueError(f"{name}: the source has no saliency mask ('mask'), only "
                       f"{', '.join(sorted(example))}")
    saliency = predictor.saliency(np.asarray(example["image"])[None], size)[0]
    yield name, saliency, metrics_lib.as_uint8_mask(example["mask"], name)


def evaluate_model(model, variables, source, size=None, max_images=0, protocol="pysodmetrics",
                   map_dir=None, progress=None):
  """SaliencyMetrics of `model` over `source` (see predict_maps); maps saved in `map_dir` if set.

  `progress` is a label for a progress bar (none if None).
  """
  metrics = metrics_lib.SaliencyMetrics(protocol)
  maps = predict_maps(model, variables, source, size, max_images)
  if progress is not None:
    total = min(len(source), max_images) if max_images else len(source)
    maps = tqdm.tqdm(maps, total=total, unit="img", desc=progress)
  for name, saliency, gt in maps:
    levels = image_lib.to_uint8_map(saliency)
    metrics.update(levels, gt, name)
    if map_dir:
      target = Path(map_dir) / f"{name.replace('/', '_')}.png"
      target.parent.mkdir(parents=True, exist_ok=True)
      Image.fromarray(levels).save(target)
  return metrics


# Saved maps against ground truth.

def resize_map(levels, size):
  """uint8 map -> uint8 map of `size` = (H, W), bilinear by OpenCV's INTER_LINEAR rule."""
  if levels.shape == tuple(size):
    return levels
  return np.clip(np.rint(resize(levels, size, align_corners=False)), 0, 255).astype(np.uint8)


def match_by_stem(pred_dir, gt_dir):
  """([(stem, map path, gt path)], unmatched map paths, unmatched gt paths)."""
  preds, gts = files.list_images(pred_dir), files.list_images(gt_dir)
  pairs = [(stem, preds[stem], gts[stem]) for stem in sorted(preds.keys() & gts.keys())]
  return (pairs, [preds[s] for s in sorted(preds.keys() - gts.keys())],
          [gts[s] for s in sorted(gts.keys() - preds.keys())])


def evaluate_folders(pred_dir, gt_dir, protocol="pysodmetrics", progress=None):
  """(SaliencyMetrics, problems) for maps in `pred_dir` against masks in `gt_dir`.

  problems = {"unmatched_maps": [paths], "unmatched_gts": [paths],
  "failed": {path: reason}}; unmatched and unreadable files are left out.
  Images are named by their ground truth's file name. UserError if a folder is
  missing or holds no image, or if both are the same folder.
  """
  if os.path.realpath(pred_dir) == os.path.realpath(gt_dir):
    raise UserError(f"--pred_dir and --gt_dir are the same folder ({pred_dir}): every map "
                    f"would be scored against itself")
  try:
    pairs, unmatched_maps, unmatched_gts = match_by_stem(pred_dir, gt_dir)
  except ValueError as error:  # a folder missing, empty, or with two files of one stem
    raise UserError(str(error)) from error
  metrics = metrics_lib.SaliencyMetrics(protocol)
  failed = {}
  for _, pred_path, gt_path in tqdm.tqdm(pairs, unit="img", desc=progress,
                                         disable=progress is None):
    pred, gt = _read_label(pred_path, failed), _read_label(gt_path, failed)
    if pred is not None and gt is not None:
      metrics.update(resize_map(pred, gt.shape), gt, os.path.basename(gt_path))
  return metrics, {"unmatched_maps": unmatched_maps, "unmatched_gts": unmatched_gts,
                   "failed": failed}


def _read_label(path, failed):
  try:
    return decode.decode_label(path)[..., 0]
  except decode.DecodeError as error:
    failed[path] = str(error)
    return None


# Reports.

def result_row(dataset, metrics):
  """{"dataset", "images", "maxF", ..., "background_only", "background_only_names"} of one
  evaluated set, in the report's key order."""
  results = metrics.results()
  return {"dataset": dataset, "images": results["images"],
          **{key: results[key] for key in metrics_lib.KEYS},
          "background_only": len(metrics.background_only),
          "background_only_names": list(metrics.background_only)}


def background_note(row, listed=20):
  """'ecssd: 2 of 50 ground truths are background only ...: a.png, b.png', or None."""
  names = row.get("background_only_names") or []
  if not row.get("background_only"):
    return None
  more = f" and {len(names) - listed} more" if len(names) > listed else ""
  return (f"{row['dataset']}: {row['background_only']} of {row['images']} ground truths are "
          f"background only (the field scores them 0): {', '.join(names[:listed])}{more}")


def format_results(rows, fmt="table"):
  """Rows of result_row as an aligned table (notes on background-only ground truths below),
  JSON lines or CSV text."""
  if fmt == "json":
    return "\n".join(json.dumps(row) for row in rows)
  columns = ["dataset", "images", *metrics_lib.KEYS]
  if fmt == "csv":
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, columns + ["background_only", "background_only_names"],
                            lineterminator="\n")
    writer.writeheader()
    writer.writerows({**row, "background_only_names": " ".join(row.get(
        "background_only_names") or [])} for row in rows)
    return buffer.getvalue().rstrip("\n")
  if fmt != "table":
    raise ValueError(f"unknown format {fmt!r}; expected table, json or csv")
  width = max([len("dataset")] + [len(row["dataset"]) for row in rows])
  lines = [f"{'dataset':<{width}}  {'images':>6}" + "".join(f"  {k:>6}" for k in metrics_lib.KEYS)]
  for row in rows:
    lines.append(f"{row['dataset']:<{width}}  {row['images']:>6}"
                 + "".join(f"  {row[k]:>6.4f}" for k in metrics_lib.KEYS))
  notes = [note for note in map(background_note, rows) if note]
  return "\n".join(lines + ([""] + notes if notes else []))


def file_label(dataset):
  """Spec as file name: 'synthetic_salient/tiny:test' -> 'synthetic_salient_tiny_test'."""
  return re.sub(r"[^A-Za-z0-9._-]+", "_", dataset).strip("_") or "dataset"


def write_report(out, rows, curves):
  """results.{txt,json,csv}; per dataset the PR and F-measure PNGs and a curves CSV."""
  os.makedirs(out, exist_ok=True)
  for fmt, suffix in (("table", "txt"), ("json", "json"), ("csv", "csv")):
    Path(out, f"results.{suffix}").write_text(format_results(rows, fmt) + "\n")
  for dataset, curve in curves.items():
    label = file_label(dataset)
    plots.precision_recall_curve({dataset: curve}, os.path.join(out, f"{label}_pr.png"),
                                 title=f"{dataset}: precision-recall")
    plots.fmeasure_curve({dataset: curve}, os.path.join(out, f"{label}_fmeasure.png"),
                         title=f"{dataset}: F-measure per threshold")
    table = np.stack([curve["thresholds"], curve["precision"], curve["recall"],
                      curve["fmeasure"]], axis=1)
    np.savetxt(os.path.join(out, f"{label}_curves.csv"), table, delimiter=",",
               header="threshold,precision,recall,fmeasure", comments="", fmt="%.8g")


# Command line.

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
    raise flags.ValidationError("give either --checkpoint and --datasets (a model) or "
                                "--pred_dir and --gt_dir (saved maps)")
  if with_model and not (FLAGS.checkpoint and FLAGS.datasets):
    raise flags.ValidationError("--checkpoint and --datasets go together")
  if with_folders and not (FLAGS.pred_dir and FLAGS.gt_dir):
    raise flags.ValidationError("--pred_dir and --gt_dir go together")
  if FLAGS.save_maps and not (FLAGS.out and with_model):
    raise flags.ValidationError("--save_maps needs --out and a model")
  if FLAGS.manual_dir and not os.path.isdir(FLAGS.manual_dir):
    raise UserError(f"--manual_dir {FLAGS.manual_dir}: no such folder")
  if FLAGS.out:
    cli.check_writable_folder(FLAGS.out, "--out")
  return parse_size(FLAGS.size)


def _evaluate_folders_cli(evaluated):
  dataset = FLAGS.name or Path(FLAGS.gt_dir.rstrip("/\\")).name or "folder"
  metrics, problems = evaluate_folders(FLAGS.pred_dir, FLAGS.gt_dir, FLAGS.protocol,
                                       progress=dataset)
  for key, what in (("unmatched_maps", "maps without ground truth"),
                    ("unmatched_gts", "ground truths without a map")):
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
    raise UserError(f"--size {FLAGS.size} is below the network's minimum input size "
                    f"{model.min_input_size()}")
  failures = 0
  for spec in FLAGS.datasets:
    try:
      source = load_dataset(spec, FLAGS.data_dir, FLAGS.manual_dir)
    except (ValueError, FileNotFoundError) as error:  # a build that failed: the others go on
      print(f"error: {error}", file=sys.stderr)
      failures += 1
      continue
    map_dir = os.path.join(FLAGS.out, "maps", file_label(spec)) if FLAGS.save_maps else None
    evaluated[spec] = evaluate_model(model, variables, source, size, FLAGS.max_images,
                                     FLAGS.protocol, map_dir, progress=spec)
  return failures


def _warn_scaled(dataset, metrics, listed=20):
  names = metrics.scaled_gts
  if names:
    more = f" and {len(names) - listed} more" if len(names) > listed else ""
    print(f"warning: {dataset}: {len(names)} ground truths stored as 0/1 were read as 0/255: "
          f"{', '.join(names[:listed])}{more}", file=sys.stderr)


@cli.reports_user_errors(FLAGS)
def main(argv):
  """`python -m poolnet_jax.evaluate`; argv = [program, flags...]. Returns the exit code:
  0, 1 if a set or an image failed, 2 for a mistake."""
  size = _check_flags(cli.parse_flags(FLAGS, argv))
  runtime.apply_xla_defaults()
  runtime.enable_compilation_cache()
  evaluated = {}
  failures = (_evaluate_folders_cli(evaluated) if FLAGS.pred_dir
              else _evaluate_model_cli(evaluated, size))
  for dataset, metrics in evaluated.items():
    _warn_scaled(dataset, metrics)
  rows = [result_row(dataset, metrics) for dataset, metrics in evaluated.items()]
  if rows:
    print(format_results(rows, FLAGS.format))
  if FLAGS.out and rows:
    write_report(FLAGS.out, rows, {d: m.curves() for d, m in evaluated.items()})
    print(f"results and curves written to {FLAGS.out}", file=sys.stderr)
  return 1 if failures else 0


if __name__ == "__main__":
  cli.run_main(main, FLAGS, __doc__)
