"""Saved maps whose size differs from their ground truth: resized when the aspect ratio is the
same, refused (or skipped with --skip_mismatched, and listed) when it is not."""

import csv
import io
import json

import cv2
import numpy as np
from PIL import Image
import py_sod_metrics
import pytest

from poolnet_jax.cli import evaluate
from poolnet_jax.cli import UserError
from poolnet_jax.inference import saved_maps


def _gt(height, width):
  gt = np.zeros((height, width), np.uint8)
  gt[height // 4 : height // 2 + 3, width // 3 : width - 4] = 255
  return gt


def _map(gt, size, seed):
  """A plausible map of `gt` at `size` (H, W)."""
  rng = np.random.default_rng(seed)
  blurred = cv2.resize(cv2.GaussianBlur(gt, (9, 9), 3), size[::-1], interpolation=cv2.INTER_AREA)
  return (blurred // 2 + rng.integers(0, 60, blurred.shape)).astype(np.uint8)


def _write(tmp_path, maps):
  """{stem: (gt, map)} as gt/<stem>.png and pred/<stem>.png."""
  for folder in ("gt", "pred"):
    (tmp_path / folder).mkdir(parents=True, exist_ok=True)
  for stem, (gt, levels) in maps.items():
    Image.fromarray(gt).save(tmp_path / "gt" / f"{stem}.png")
    Image.fromarray(levels).save(tmp_path / "pred" / f"{stem}.png")
  return [f"--pred_dir={tmp_path / 'pred'}", f"--gt_dir={tmp_path / 'gt'}"]


def _by_hand(pairs):
  """maxF, MAE, Sm, meanE and wF straight from pysodmetrics."""
  fm, mae, sm, em, wfm = (
    py_sod_metrics.FmeasureV2({"fm": py_sod_metrics.FmeasureHandler(True, False, beta=0.3)}),
    py_sod_metrics.MAE(),
    py_sod_metrics.Smeasure(),
    py_sod_metrics.Emeasure(),
    py_sod_metrics.WeightedFmeasure(),
  )
  for pred, gt in pairs:
    for metric in (fm, mae, sm, em, wfm):
      metric.step(pred, gt)
  return {
    "maxF": fm.get_results()["fm"]["dynamic"].max(),
    "MAE": mae.get_results()["mae"],
    "Sm": sm.get_results()["sm"],
    "meanE": em.get_results()["em"]["curve"].mean(),
    "wF": wfm.get_results()["wfm"],
  }


def test_same_aspect_within_a_pixel():
  assert saved_maps.same_aspect((20, 30), (60, 90))  # a third
  assert saved_maps.same_aspect((31, 46), (61, 91))  # half, rounded up ([::2])
  assert saved_maps.same_aspect((121, 180), (240, 360))  # half, one side a pixel off
  assert saved_maps.same_aspect((480, 720), (240, 360))  # twice
  assert not saved_maps.same_aspect((90, 60), (60, 90))  # turned
  assert not saved_maps.same_aspect((60, 80), (60, 90))  # cropped
  assert not saved_maps.same_aspect((123, 180), (240, 360))  # three pixels off at half
  sizes = {f"m{i}.png": ((10, 20), (20, 10)) for i in range(22)}
  assert saved_maps.size_list(sizes).endswith("m19.png (map 20x10, ground truth 10x20) and 2 more")


def test_turned_or_cropped_maps_are_an_error_naming_them(tmp_path, capsys):
  gt = _gt(40, 60)
  argv = _write(
    tmp_path,
    {
      "turned": (gt, _map(gt, (60, 40), 0)),
      "cropped": (gt, _map(gt, (40, 50), 1)),
      "fine": (gt, _map(gt, (40, 60), 2)),
    },
  )
  with pytest.raises(UserError, match=r"2 maps have another aspect ratio") as error:
    saved_maps.evaluate_folders(tmp_path / "pred", tmp_path / "gt")
  assert "cropped.png (map 50x40, ground truth 60x40)" in str(error.value)
  assert "turned.png (map 40x60, ground truth 60x40)" in str(error.value)
  assert "fine.png" not in str(error.value)

  assert evaluate.main(["evaluate", *argv, "--format=json"]) == 2
  captured = capsys.readouterr()
  assert captured.err.startswith("error: 2 maps") and not captured.out
  assert len(captured.err.strip().splitlines()) == 1 and "--skip_mismatched" in captured.err


def test_same_aspect_maps_are_resized_with_one_warning(tmp_path, capsys):
  gts = [_gt(60, 90), _gt(61, 91), _gt(50, 70)]
  maps = [_map(gts[0], (20, 30), 0), _map(gts[1], (31, 46), 1), _map(gts[2], (50, 70), 2)]
  argv = _write(tmp_path, {f"im{i}": pair for i, pair in enumerate(zip(gts, maps))})

  found, problems = saved_maps.evaluate_folders(tmp_path / "pred", tmp_path / "gt")

  assert not problems["mismatched"] and not problems["failed"]
  assert {p.rsplit("/", 1)[-1]: s for p, s in problems["resized"].items()} == {
    "im0.png": ((20, 30), (60, 90)),
    "im1.png": ((31, 46), (61, 91)),
  }
  upscaled = [
    cv2.resize(m.astype(np.float32), g.shape[::-1], interpolation=cv2.INTER_LINEAR)
    for m, g in zip(maps, gts)
  ]
  expected = _by_hand([(np.rint(u).astype(np.uint8), g) for u, g in zip(upscaled, gts)])
  for key, value in expected.items():
    assert found.results()[key] == pytest.approx(value, rel=1e-9), key

  assert evaluate.main(["evaluate", *argv, "--format=json"]) == 0
  captured = capsys.readouterr()
  (warning,) = [line for line in captured.err.splitlines() if "resized" in line]
  assert warning.startswith("warning: 2 maps of another size")
  assert "im0.png (map 30x20, ground truth 90x60)" in warning and "im2.png" not in warning
  assert json.loads(captured.out)["MAE"] == pytest.approx(expected["MAE"], rel=1e-9)


def test_skip_mismatched_scores_the_rest_and_lists_the_skipped(tmp_path, capsys):
  gt = _gt(40, 60)
  good = {f"ok{i}": (gt, _map(gt, (20, 30), i)) for i in range(2)}
  argv = _write(tmp_path / "good", good)
  assert evaluate.main(["evaluate", *argv, "--format=json", "--name=gt"]) == 0
  reference = json.loads(capsys.readouterr().out)
  bad = {"turned": (gt, _map(gt, (60, 40), 5)), "cropped": (gt, _map(gt, (40, 45), 6))}
  argv = _write(tmp_path / "all", {**good, **bad}) + ["--skip_mismatched"]
  out = tmp_path / "out"

  assert evaluate.main(["evaluate", *argv, "--format=json", f"--out={out}"]) == 0

  captured = capsys.readouterr()
  row = json.loads(captured.out)
  assert row["images"] == 2 and row["MAE"] == pytest.approx(reference["MAE"], rel=1e-12)
  assert row["skipped_mismatched"] == 2
  assert row["skipped_mismatched_names"] == ["cropped.png", "turned.png"]
  assert "warning: 2 maps of another aspect ratio than their ground truth skipped" in captured.err
  note = "gt: 2 maps skipped (--skip_mismatched), their aspect ratio differs from their "
  assert note + "ground truth's: cropped.png, turned.png" in (out / "results.txt").read_text()
  (written,) = csv.DictReader(io.StringIO((out / "results.csv").read_text()))
  assert written["skipped_mismatched"] == "2"
  assert written["skipped_mismatched_names"] == "cropped.png turned.png"
  assert "skipped_mismatched" not in reference  # only with the flag

  assert evaluate.main(["evaluate", "--checkpoint=c", "--datasets=ecssd", "--skip_mismatched"]) == 2
  assert "--skip_mismatched needs --pred_dir" in capsys.readouterr().err
