"""Evaluation results as rows, as table / JSON lines / CSV text, and as report files.

rows = [result_row("ecssd", metrics)]
print(format_results(rows, "table"))
write_report("results/", rows, {"ecssd": metrics.curves()})
"""

import csv
import io
import json
import os
from pathlib import Path
import re

import numpy as np

from poolnet_jax.inference import metrics as metrics_lib
from poolnet_jax.inference import plots


SKIPPED = ("skipped_mismatched", "skipped_mismatched_names")  # saved maps, --skip_mismatched


def result_row(dataset, metrics, skipped=None):
  """{"dataset", "images", "maxF", ..., "background_only", "background_only_names"} of one
  evaluated set, in the report's key order; with `skipped` (names of saved maps left out for
  their aspect ratio), also "skipped_mismatched" and "skipped_mismatched_names"."""
  results = metrics.results()
  row = {
    "dataset": dataset,
    "images": results["images"],
    **{key: results[key] for key in metrics_lib.KEYS},
    "background_only": len(metrics.background_only),
    "background_only_names": list(metrics.background_only),
  }
  if skipped is not None:
    row.update(zip(SKIPPED, (len(skipped), list(skipped))))
  return row


def background_note(row, listed=20):
  """'ecssd: 2 of 50 ground truths are background only ...: a.png, b.png', or None."""
  names = row.get("background_only_names") or []
  if not row.get("background_only"):
    return None
  more = f" and {len(names) - listed} more" if len(names) > listed else ""
  return (
    f"{row['dataset']}: {row['background_only']} of {row['images']} ground truths are "
    f"background only (the field scores them 0): {', '.join(names[:listed])}{more}"
  )


def skipped_note(row, listed=20):
  """'gt: 2 maps skipped (--skip_mismatched), ...: a.png, b.png', or None."""
  names = row.get(SKIPPED[1]) or []
  if not row.get(SKIPPED[0]):
    return None
  more = f" and {len(names) - listed} more" if len(names) > listed else ""
  return (
    f"{row['dataset']}: {row[SKIPPED[0]]} maps skipped (--skip_mismatched), their aspect ratio "
    f"differs from their ground truth's: {', '.join(names[:listed])}{more}"
  )


def format_results(rows, fmt="table"):
  """Rows of result_row as an aligned table (notes below on background-only ground truths and
  skipped maps), JSON lines or CSV text."""
  if fmt == "json":
    return "\n".join(json.dumps(row) for row in rows)
  columns = ["dataset", "images", *metrics_lib.KEYS]
  if fmt == "csv":
    buffer = io.StringIO()
    counts = ["background_only"] + [SKIPPED[0]] * any(SKIPPED[0] in row for row in rows)
    fields = [field for count in counts for field in (count, f"{count}_names")]
    writer = csv.DictWriter(buffer, columns + fields, lineterminator="\n")
    writer.writeheader()
    writer.writerows(
      {**row, **{f"{c}_names": " ".join(row.get(f"{c}_names") or []) for c in counts}}
      for row in rows
    )
    return buffer.getvalue().rstrip("\n")
  if fmt != "table":
    raise ValueError(f"unknown format {fmt!r}; expected table, json or csv")
  width = max([len("dataset")] + [len(row["dataset"]) for row in rows])
  lines = [f"{'dataset':<{width}}  {'images':>6}" + "".join(f"  {k:>6}" for k in metrics_lib.KEYS)]
  for row in rows:
    lines.append(
      f"{row['dataset']:<{width}}  {row['images']:>6}"
      + "".join(f"  {row[k]:>6.4f}" for k in metrics_lib.KEYS)
    )
  notes = [note for row in rows for note in (background_note(row), skipped_note(row)) if note]
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
    plots.precision_recall_curve(
      {dataset: curve}, os.path.join(out, f"{label}_pr.png"), title=f"{dataset}: precision-recall"
    )
    plots.fmeasure_curve(
      {dataset: curve},
      os.path.join(out, f"{label}_fmeasure.png"),
      title=f"{dataset}: F-measure per threshold",
    )
    table = np.stack(
      [curve["thresholds"], curve["precision"], curve["recall"], curve["fmeasure"]], axis=1
    )
    np.savetxt(
      os.path.join(out, f"{label}_curves.csv"),
      table,
      delimiter=",",
      header="threshold,precision,recall,fmeasure",
      comments="",
      fmt="%.8g",
    )
