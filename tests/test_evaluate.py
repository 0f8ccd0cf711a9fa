"""`poolnet_jax.cli.evaluate` and its library (predictor_lib.evaluate_model, saved_maps, reports,
data.datasets): a model over a TFDS test set, saved maps against ground truth (the plots:
test_plots.py)."""

import csv
import io
import json

import cv2
import jax
import numpy as np
from PIL import Image
import py_sod_metrics
import pytest
import tensorflow_datasets as tfds

import poolnet_jax
from poolnet_jax.cli import evaluate
from poolnet_jax.data import datasets
from poolnet_jax.imaging import ops
from poolnet_jax.inference import predictor as predictor_lib, metrics, reports, saved_maps
from image_files import read_png
from random_weights import TINY, random_variables


def _pysodmetrics(pairs):
  """The nine measures straight from pysodmetrics' classes."""
  fm = py_sod_metrics.FmeasureV2({"fm": py_sod_metrics.FmeasureHandler(True, True, beta=0.3)})
  mae, sm, em, wfm = (
    py_sod_metrics.MAE(),
    py_sod_metrics.Smeasure(),
    py_sod_metrics.Emeasure(),
    py_sod_metrics.WeightedFmeasure(),
  )
  for pred, gt in pairs:
    for metric in (fm, mae, sm, em, wfm):
      metric.step(pred, gt)
  f, e = fm.get_results()["fm"], em.get_results()["em"]
  return {
    "maxF": f["dynamic"].max(),
    "meanF": f["dynamic"].mean(),
    "adpF": f["adaptive"],
    "MAE": mae.get_results()["mae"],
    "Sm": sm.get_results()["sm"],
    "maxE": e["curve"].max(),
    "meanE": e["curve"].mean(),
    "adpE": e["adp"],
    "wF": wfm.get_results()["wfm"],
  }


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
  import poolnet_jax.data  # noqa: F401  (registers the builders)

  data_dir = tmp_path_factory.mktemp("tfds")
  tfds.builder("synthetic_salient/tiny", data_dir=data_dir).download_and_prepare()
  return data_dir


def test_model_on_a_tfds_test_set_then_its_saved_maps(tiny_data, tmp_path, capsys):
  model = poolnet_jax.create_model("resnet50", **TINY)
  variables = random_variables(model)
  poolnet_jax.save_pretrained(tmp_path / "model", "resnet50", variables, **TINY)
  out = tmp_path / "out"

  code = evaluate.main(
    [
      "evaluate",
      f"--checkpoint={tmp_path / 'model'}",
      "--datasets=synthetic_salient/tiny",
      f"--data_dir={tiny_data}",
      "--size=111,122",
      "--format=json",
      f"--out={out}",
      "--save_maps",
    ]
  )

  assert code == 0
  rows = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
  assert len(rows) == 1
  row = rows[0]
  assert set(row) == {
    "dataset",
    "images",
    *metrics.KEYS,
    "background_only",
    "background_only_names",
  }
  assert row["dataset"] == "synthetic_salient/tiny" and row["images"] == 8
  assert row["background_only"] == 0 and row["background_only_names"] == []
  # Each saved map is the model's own map: run at 111x122, resized back (aligned corners).
  source = tfds.data_source("synthetic_salient/tiny", data_dir=tiny_data, split="test")
  apply = jax.jit(model.apply)
  pairs = []
  for index in range(len(source)):
    example = source[index]
    image, gt = example["image"], example["mask"][..., 0]
    x = ops.resize_bilinear(poolnet_jax.preprocess(image[None]), (111, 122))
    expected = ops.resize_bilinear(jax.nn.sigmoid(apply(variables, x)), image.shape[:2])
    saved = read_png(out / "maps" / "synthetic_salient_tiny" / f"{example['name'].decode()}.png")
    assert saved.shape == gt.shape
    assert np.abs(saved / 255 - np.asarray(expected)[0, ..., 0]).max() <= 1.001 / 255
    pairs.append((saved, gt))
  # The numbers are pysodmetrics' own for those maps.
  expected = _pysodmetrics(pairs)
  for key in metrics.KEYS:
    assert row[key] == pytest.approx(expected[key], rel=1e-9, abs=1e-12), key
  for name in ["results.txt", "results.json", "results.csv", "synthetic_salient_tiny_curves.csv"]:
    assert (out / name).stat().st_size > 0, name
  for name in ["synthetic_salient_tiny_pr.png", "synthetic_salient_tiny_fmeasure.png"]:
    picture = read_png(out / name)
    assert picture.ndim == 3 and picture.shape[0] > 300 and picture.std() > 5, name

  # The same maps as a folder against the masks as a folder: the same numbers; strays reported.
  gt_dir, map_dir = tmp_path / "gt", out / "maps" / "synthetic_salient_tiny"
  gt_dir.mkdir()
  for index in range(len(source)):
    example = source[index]
    Image.fromarray(example["mask"][..., 0]).save(gt_dir / f"{example['name'].decode()}.png")
  Image.fromarray(np.zeros((9, 9), np.uint8)).save(map_dir / "stray.png")
  Image.fromarray(np.zeros((9, 9), np.uint8)).save(gt_dir / "lonely.png")

  code = evaluate.main(
    ["evaluate", f"--pred_dir={map_dir}", f"--gt_dir={gt_dir}", "--name=tiny", "--format=csv"]
  )

  captured = capsys.readouterr()
  assert code == 0
  assert "stray.png" in captured.err and "lonely.png" in captured.err
  (again,) = list(csv.DictReader(io.StringIO(captured.out)))
  assert again["dataset"] == "tiny" and again["images"] == "8"
  for key in metrics.KEYS:
    assert float(again[key]) == pytest.approx(row[key], rel=1e-12), key


def test_size_multiple_rounds_run_sizes_and_counts_the_programs(tiny_data, tmp_path, capsys):
  model = poolnet_jax.create_model("resnet50", **TINY)
  variables = random_variables(model, seed=3)
  poolnet_jax.save_pretrained(tmp_path / "model", "resnet50", variables, **TINY)
  out = tmp_path / "out"

  code = evaluate.main(
    [
      "evaluate",
      f"--checkpoint={tmp_path / 'model'}",
      "--datasets=synthetic_salient/tiny",
      f"--data_dir={tiny_data}",
      "--size_multiple=16",
      "--format=json",
      f"--out={out}",
      "--save_maps",
    ]
  )

  captured = capsys.readouterr()
  assert code == 0, captured.err
  source = tfds.data_source("synthetic_salient/tiny", data_dir=tiny_data, split="test")
  # Native sizes (47x71 ... 96x96) are below the minimum 111: scaled up to 112 (the first
  # multiple of 16 above it, aspect kept), the other side rounded to the nearest multiple.
  runs = {}
  for index in range(len(source)):
    h, w = source[index]["image"].shape[:2]
    scale = 112 / min(h, w)
    runs[index] = tuple(16 * int(round(n * scale) / 16 + 0.5) for n in (h, w))
  assert len(set(runs.values())) == 3  # 5 distinct shapes without rounding
  assert captured.err.splitlines()[-1].startswith("3 programs compiled in "), captured.err
  apply = jax.jit(model.apply)
  for index, run in runs.items():
    example = source[index]
    x = ops.resize_bilinear(poolnet_jax.preprocess(example["image"][None]), run)
    expected = ops.resize_bilinear(jax.nn.sigmoid(apply(variables, x)), example["mask"].shape[:2])
    saved = read_png(out / "maps" / "synthetic_salient_tiny" / f"{example['name'].decode()}.png")
    assert saved.shape == example["mask"].shape[:2]  # the image's own size
    assert np.abs(saved / 255 - np.asarray(expected)[0, ..., 0]).max() <= 1.001 / 255


def _folders(tmp_path, count=3, seed=0):
  """Maps at half the masks' size, as some methods save them."""
  rng = np.random.default_rng(seed)
  (tmp_path / "pred").mkdir()
  (tmp_path / "gt").mkdir()
  pairs = []
  for index in range(count):
    h, w = 2 * rng.integers(20, 40), 2 * rng.integers(20, 40) + 1
    gt = np.zeros((h, w), np.uint8)
    gt[h // 4 : h // 2 + 5, w // 3 : w - 4] = 255
    blurred = cv2.GaussianBlur(gt, (9, 9), 3)[::2, ::2] // 2
    pred = blurred + rng.integers(0, 60, blurred.shape, dtype=np.uint8)
    Image.fromarray(pred).save(tmp_path / "pred" / f"im{index}.png")
    Image.fromarray(gt).save(tmp_path / "gt" / f"im{index}.png")
    pairs.append((pred, gt))
  return pairs


def test_saved_maps_are_resized_to_the_ground_truth_like_opencv(tmp_path):
  pairs = _folders(tmp_path)
  found, problems = saved_maps.evaluate_folders(tmp_path / "pred", tmp_path / "gt")
  assert len(problems.pop("resized")) == len(pairs) and not any(problems.values())
  resized = []
  for pred, gt in pairs:
    ours = saved_maps.resize_map(pred, gt.shape)
    opencv = cv2.resize(pred, gt.shape[::-1], interpolation=cv2.INTER_LINEAR)  # fixed point
    assert np.abs(ours.astype(int) - opencv).max() <= 1
    reference = cv2.resize(pred.astype(np.float32), gt.shape[::-1], interpolation=cv2.INTER_LINEAR)
    resized.append((np.rint(reference).astype(np.uint8), gt))
  expected = _pysodmetrics(resized)
  for key in metrics.KEYS:
    assert found.results()[key] == pytest.approx(expected[key], rel=1e-9), key


def test_salmetric_protocol_and_unreadable_maps_on_the_command_line(tmp_path, capsys):
  pairs = _folders(tmp_path, seed=1)
  reference = metrics.SaliencyMetrics("salmetric")
  for pred, gt in pairs:
    reference.update(saved_maps.resize_map(pred, gt.shape), gt)
  argv = [
    "evaluate",
    f"--pred_dir={tmp_path / 'pred'}",
    f"--gt_dir={tmp_path / 'gt'}",
    "--format=json",
  ]
  assert evaluate.main(argv + ["--protocol=salmetric"]) == 0
  salmetric = json.loads(capsys.readouterr().out)
  assert evaluate.main(argv) == 0
  default = json.loads(capsys.readouterr().out)
  for key in metrics.KEYS:
    assert salmetric[key] == pytest.approx(reference.results()[key], rel=1e-12), key
  assert salmetric["MAE"] != pytest.approx(default["MAE"], rel=1e-3)  # no min-max normalisation
  (tmp_path / "pred" / "im0.png").write_bytes(b"\x89PNG broken")
  assert evaluate.main(argv) == 1
  captured = capsys.readouterr()
  assert "im0.png" in captured.err and json.loads(captured.out)["images"] == 2


def test_command_line_errors(tmp_path, capsys):
  assert evaluate.main(["evaluate", "--datasets=ecssd"]) == 2
  assert "--checkpoint and --datasets" in capsys.readouterr().err
  assert evaluate.main(["evaluate", "--pred_dir=a", "--gt_dir=b", "--checkpoint=c"]) == 2
  assert evaluate.main(["evaluate", "--pred_dir=a", "--gt_dir=b", "--size=0"]) == 2
  (tmp_path / "maps").mkdir()
  (tmp_path / "gt").mkdir()
  assert (
    evaluate.main(["evaluate", f"--pred_dir={tmp_path / 'maps'}", f"--gt_dir={tmp_path / 'gt'}"])
    == 2
  )
  assert "no image files" in capsys.readouterr().err
  with pytest.raises(ValueError, match="unknown dataset 'no_such_set'"):
    datasets.load_dataset("no_such_set", data_dir=tmp_path)
  with pytest.raises(ValueError, match="not built .*--manual_dir"):
    datasets.load_dataset("ecssd", data_dir=tmp_path)


def test_dataset_names_sizes_and_formats():
  assert datasets.parse_dataset("ecssd") == ("ecssd", "test")
  assert datasets.parse_dataset("duts_te") == ("duts", "test")
  assert datasets.parse_dataset("duts:train") == ("duts", "train")
  assert datasets.parse_dataset("synthetic_salient/small") == ("synthetic_salient/small", "test")
  assert evaluate.parse_size("320") == (320, 320) and evaluate.parse_size("288,384") == (288, 384)
  assert evaluate.parse_size(None) is None
  rows = [{"dataset": "ecssd", "images": 3, **{k: i / 10 for i, k in enumerate(metrics.KEYS)}}]
  table = reports.format_results(rows, "table").splitlines()
  assert table[0].split() == ["dataset", "images", *metrics.KEYS]
  assert table[1].split() == ["ecssd", "3", *[f"{i / 10:.4f}" for i in range(9)]]
  assert json.loads(reports.format_results(rows, "json")) == rows[0]
  assert reports.file_label("synthetic_salient/tiny:test") == "synthetic_salient_tiny_test"


def test_0_1_ground_truths_and_background_only_ones_in_every_output(tmp_path, capsys):
  pairs = _folders(tmp_path, count=3, seed=2)
  blank = np.zeros((40, 50), np.uint8)
  Image.fromarray(blank).save(tmp_path / "gt" / "im3.png")
  Image.fromarray(np.full((20, 25), 90, np.uint8)).save(tmp_path / "pred" / "im3.png")
  reference, _ = saved_maps.evaluate_folders(tmp_path / "pred", tmp_path / "gt")  # 0/255 masks
  Image.fromarray(pairs[0][1] // 255).save(tmp_path / "gt" / "im0.png")  # stored as 0/1
  assert np.asarray(Image.open(tmp_path / "gt" / "im0.png")).max() == 1
  out = tmp_path / "out"

  code = evaluate.main(
    [
      "evaluate",
      f"--pred_dir={tmp_path / 'pred'}",
      f"--gt_dir={tmp_path / 'gt'}",
      "--format=json",
      f"--out={out}",
    ]
  )

  captured = capsys.readouterr()
  assert code == 0
  row = json.loads(captured.out)
  for key in metrics.KEYS:
    assert row[key] == pytest.approx(reference.results()[key], rel=1e-12), key
  assert "gt: 1 ground truths stored as 0/1 were read as 0/255: im0.png" in captured.err
  assert row["background_only"] == 1 and row["background_only_names"] == ["im3.png"]
  note = "gt: 1 of 4 ground truths are background only (the field scores them 0): im3.png"
  assert note in (out / "results.txt").read_text()
  assert note in reports.format_results([row], "table")
  (written,) = csv.DictReader(io.StringIO((out / "results.csv").read_text()))
  assert written["background_only"] == "1" and written["background_only_names"] == "im3.png"
  assert json.loads((out / "results.json").read_text())["background_only_names"] == ["im3.png"]


def test_model_mode_reads_0_1_ground_truths_as_0_255(tmp_path):
  model = poolnet_jax.create_model("resnet50", **TINY)
  variables = random_variables(model)
  rng = np.random.default_rng(4)
  source = []
  for index in range(2):
    mask = np.zeros((121, 133, 1), np.uint8)
    mask[30:90, 20 + 10 * index : 100] = 255
    source.append(
      {
        "image": rng.integers(0, 256, (121, 133, 3), dtype=np.uint8),
        "mask": mask,
        "name": f"s{index}".encode(),
      }
    )
  stored = [{**ex, "mask": ex["mask"] // 255} for ex in source]
  expected = predictor_lib.evaluate_model(model, variables, source)
  found = predictor_lib.evaluate_model(model, variables, stored)
  assert found.scaled_gts == ["s0", "s1"] and not expected.scaled_gts
  assert found.results() == expected.results()
  assert expected.results()["maxF"] > 0.3  # a set that scores, not a degenerate one


# Mistakes, before any work.


def test_mistakes_are_one_error_line_before_any_work(tiny_data, tmp_path, capsys):
  model = poolnet_jax.create_model("resnet50", **TINY)
  poolnet_jax.save_pretrained(tmp_path / "model", "resnet50", random_variables(model), **TINY)
  (tmp_path / "afile").write_text("x")
  (tmp_path / "maps").mkdir()
  Image.fromarray(np.zeros((9, 9), np.uint8)).save(tmp_path / "maps" / "a.png")
  data = f"--data_dir={tiny_data}"
  cases = [
    # The names are checked first: the checkpoint does not even exist here.
    (
      [f"--checkpoint={tmp_path / 'nope'}", "--datasets=synthetic_salient/tiny,ecsd", data],
      "ecsd: unknown dataset 'ecsd'; nearest registered names: ecssd",
    ),
    (
      [f"--checkpoint={tmp_path / 'nope'}", "--datasets=synthetic_salient/big", data],
      "synthetic_salient/big: synthetic_salient has no config 'big' (it has default, small, tiny)",
    ),
    (
      [f"--checkpoint={tmp_path / 'nope'}", "--datasets=synthetic_salient/tiny:val", data],
      "has no split 'val' (it has test, train, validation)",
    ),
    (
      [f"--checkpoint={tmp_path / 'nope'}", "--datasets=ecssd", f"--data_dir={tmp_path}"],
      "ecssd: ecssd is not built in",
    ),
    (
      [f"--checkpoint={tmp_path / 'nope'}", "--datasets=synthetic_salient/tiny", data],
      f"{tmp_path / 'nope'}: no such file or folder",
    ),
    (
      [
        f"--checkpoint={tmp_path / 'model'}",
        "--datasets=synthetic_salient/tiny",
        data,
        "--size=64",
      ],
      "--size 64 is below the network's minimum input size 111",
    ),
    (
      [
        f"--checkpoint={tmp_path / 'model'}",
        "--datasets=synthetic_salient/tiny",
        data,
        f"--out={tmp_path / 'afile'}",
      ],
      "is a file, not a folder",
    ),
    (
      [
        f"--checkpoint={tmp_path / 'model'}",
        "--datasets=synthetic_salient/tiny",
        data,
        "--size=128",
        "--size_multiple=16",
      ],
      "--size and --size_multiple exclude each other",
    ),
    (
      [f"--pred_dir={tmp_path / 'maps'}", f"--gt_dir={tmp_path / 'gt'}", "--size_multiple=8"],
      "--size_multiple needs a model",
    ),
    ([f"--pred_dir={tmp_path / 'maps'}", f"--gt_dir={tmp_path / 'maps'}"], "are the same folder"),
    ([f"--pred_dir={tmp_path / 'maps'}", f"--gt_dir={tmp_path / 'nope'}"], "folder not found"),
  ]
  for args, expected in cases:
    assert evaluate.main(["evaluate", *args]) == 2, args
    captured = capsys.readouterr()
    assert captured.err.startswith("error: ") and expected in captured.err, (args, captured.err)
    assert len(captured.err.strip().splitlines()) == 1 and not captured.out, captured.err
