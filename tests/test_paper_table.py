"""`poolnet_jax.cli.paper_table` and its library `poolnet_jax.inference.paper`: the paper's table for
checkpoints written as .pth by the project's writer, over tiny fake ECSSD / SOD folders built
by the real TFDS builders from a manual dir."""

import csv
import io
import json

import jax
import numpy as np
from PIL import Image
import py_sod_metrics
import pytest
import tensorflow_datasets as tfds

import poolnet_jax
from poolnet_jax.cli import paper_table
from poolnet_jax.imaging import image as image_lib
from poolnet_jax.inference import paper
from poolnet_jax.weights.torch_io import mapping
from poolnet_jax.weights.torch_io.pth_writer import write_state_dict
from random_weights import TINY, random_variables

SIZE = (112, 120)  # one shape (the tiny model's minimum is 111): one program per model
PUBLISHED = {  # ResNet-50 + edge, max F / MAE, as the paper (and reference/POOLNET.md) lists
  "ecssd": (0.945, 0.038),
  "pascal_s": (0.880, 0.065),
  "dut_omron": (0.833, 0.053),
  "hku_is": (0.935, 0.030),
  "sod": (0.882, 0.102),
  "duts_te": (0.892, 0.036),
}
COUNTS = {"ecssd": 1000, "pascal_s": 850, "dut_omron": 5166, "hku_is": 1447, "sod": 300}
COUNTS["duts_te"] = 5019


def _scene(rng):
  """A noisy image with a brighter ellipse, and its mask (0 / 255)."""
  h, w = SIZE
  yy, xx = np.mgrid[:h, :w]
  cy, cx = rng.uniform(0.3, 0.7) * h, rng.uniform(0.3, 0.7) * w
  inside = ((yy - cy) / (0.25 * h)) ** 2 + ((xx - cx) / (0.2 * w)) ** 2 < 1
  image = rng.integers(0, 120, (h, w, 3)) + 100 * inside[..., None]
  return image.astype(np.uint8), inside.astype(np.uint8) * 255


@pytest.fixture(scope="module")
def manual_dir(tmp_path_factory):
  """ECSSD (3 images) and SOD (2 images) in their usual folder layouts."""
  root = tmp_path_factory.mktemp("downloads")
  rng = np.random.default_rng(0)
  for folder, images, masks, count in (
    ("ECSSD", "images", "ground_truth_mask", 3),
    ("SOD", "Imgs", "GT", 2),
  ):
    (root / folder / images).mkdir(parents=True)
    (root / folder / masks).mkdir()
    for index in range(count):
      image, mask = _scene(rng)
      Image.fromarray(image).save(root / folder / images / f"{index:04d}.jpg", quality=95)
      Image.fromarray(mask).save(root / folder / masks / f"{index:04d}.png")
  return root


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
  """{variant: (model, variables, .pth path)}: tiny models, random weights, written as .pth."""
  folder = tmp_path_factory.mktemp("pth")
  found = {}
  for seed, variant in enumerate(("resnet50", "resnet50_edge")):
    model = poolnet_jax.create_model(variant, **TINY)
    variables = random_variables(model, seed=seed)
    path = folder / f"{variant}.pth"
    write_state_dict(path, mapping.to_state_dict(variables))
    found[variant] = (model, variables, path)
  return found


def _independent(model, variables, source):
  """max F, MAE and S-measure straight from pysodmetrics over the model's 8-bit maps."""
  fm = py_sod_metrics.FmeasureV2({"fm": py_sod_metrics.FmeasureHandler(True, False, beta=0.3)})
  mae, sm = py_sod_metrics.MAE(), py_sod_metrics.Smeasure()
  apply = jax.jit(model.apply)
  for index in range(len(source)):
    example = source[index]
    logits = np.asarray(apply(variables, poolnet_jax.preprocess(example["image"][None])))
    levels = image_lib.to_uint8_map(1 / (1 + np.exp(-logits[0, ..., 0].astype(np.float64))))
    gt = example["mask"][..., 0]
    assert levels.shape == gt.shape
    for metric in (fm, mae, sm):
      metric.step(levels, gt)
  return {
    "maxF": fm.get_results()["fm"]["dynamic"].max(),
    "MAE": mae.get_results()["mae"],
    "Sm": sm.get_results()["sm"],
  }


def _args(checkpoints, manual_dir, data_dir, *more):
  return [
    "paper_table",
    f"--checkpoint={checkpoints['resnet50'][2]}",
    f"--edge_checkpoint={checkpoints['resnet50_edge'][2]}",
    f"--manual_dir={manual_dir}",
    f"--data_dir={data_dir}",
    *more,
  ]


def test_table_equals_pysodmetrics_beside_the_published_numbers(
  checkpoints, manual_dir, tmp_path, capsys, monkeypatch
):
  # SOD's two images stand for a complete set; ECSSD's three are an incomplete one.
  monkeypatch.setitem(paper.SETS, "sod", paper.PaperSet("SOD", 2))
  out = tmp_path / "out"
  args = _args(checkpoints, manual_dir, tmp_path / "tfds", "--datasets=ecssd,sod")

  code = paper_table.main(args + ["--allow_incomplete", "--format=json", f"--out={out}"])

  captured = capsys.readouterr()
  assert code == 0, captured.err
  assert "ECSSD (ecssd): incomplete, expected 1000 images, found 3" in captured.err
  assert "reduced PoolNet" in captured.err  # the tiny models are not the paper's
  rows = [json.loads(line) for line in captured.out.splitlines()]
  assert [(r["dataset"], r["model"]) for r in rows] == [
    ("ECSSD", "without edge"),
    ("ECSSD", "with edge"),
    ("SOD", "without edge"),
    ("SOD", "with edge"),
  ]
  by_key = {"ECSSD": "ecssd", "SOD": "sod"}
  for row in rows:
    key = by_key[row["dataset"]]
    assert (row["images"], row["expected"]) == ((3, 1000) if key == "ecssd" else (2, 2))
    assert row["status"] == ("incomplete" if key == "ecssd" else "complete")
    assert ("incomplete, expected 1000 images, found 3" in row["note"]) == (key == "ecssd")
    variant = "resnet50_edge" if row["model"] == "with edge" else "resnet50"
    model, variables, _ = checkpoints[variant]
    source = tfds.data_source(key, data_dir=tmp_path / "tfds", split="test")
    expected = _independent(model, variables, source)
    for measure in ("maxF", "MAE", "Sm"):
      assert row[measure] == pytest.approx(expected[measure], rel=1e-9, abs=1e-12), measure
    published = PUBLISHED[key] if variant == "resnet50_edge" else (None, None)
    assert (row["maxF_paper"], row["MAE_paper"], row["Sm_paper"]) == (*published, None)
    for measure, value in zip(("maxF", "MAE"), published):
      diff = None if value is None else pytest.approx(row[measure] - value, abs=1e-12)
      assert row[f"{measure}_diff"] == diff
    assert row["Sm_diff"] is None
  # The two models differ (their own weights), so the rows are not one model's twice.
  assert rows[0]["MAE"] != rows[1]["MAE"]

  # The files: the same rows as CSV and JSON, the table with the signed difference.
  assert [json.loads(line) for line in (out / "paper_table.json").read_text().splitlines()] == rows
  table = list(csv.DictReader(io.StringIO((out / "paper_table.csv").read_text())))
  assert [float(r["maxF"]) for r in table] == pytest.approx([r["maxF"] for r in rows])
  assert table[1]["maxF_paper"] == "0.945" and table[0]["maxF_paper"] == ""
  text = (out / "paper_table.txt").read_text()
  edge_ecssd = next(
    line for line in text.splitlines() if line.split()[:3] == ["ECSSD", "with", "edge"]
  )
  assert "3/1000" in edge_ecssd and "incomplete" in edge_ecssd
  assert f"{rows[1]['maxF'] - 0.945:+.4f}" in edge_ecssd and "0.945" in edge_ecssd
  assert paper.PAPER_NOTE in text


def test_an_incomplete_or_missing_set_stops_before_any_scoring(
  checkpoints, manual_dir, tmp_path, capsys, monkeypatch
):
  def no_scoring(*args, **kwargs):
    raise AssertionError("scored although a set is incomplete")

  monkeypatch.setattr(paper.predictor_lib, "evaluate_model", no_scoring)
  args = _args(checkpoints, manual_dir, tmp_path / "tfds", "--datasets=ecssd,dut_omron,sod")

  code = paper_table.main(args)

  captured = capsys.readouterr()
  assert code == 2 and captured.out == ""
  assert "ECSSD (ecssd): incomplete, expected 1000 images, found 3" in captured.err
  assert "SOD (sod): incomplete, expected 300 images, found 2" in captured.err
  assert "DUT-O (dut_omron): missing, expected 5166 images, found none" in captured.err
  assert "--allow_incomplete" in captured.err

  # With the flag the missing set is a row without measures, the others are scored.
  monkeypatch.undo()
  code = paper_table.main(
    args[:2]
    + ["--datasets=dut_omron", f"--data_dir={tmp_path / 'tfds'}"]
    + ["--allow_incomplete", "--format=csv"]
  )
  captured = capsys.readouterr()
  assert code == 0, captured.err
  (row,) = list(csv.DictReader(io.StringIO(captured.out)))
  assert (row["dataset"], row["status"], row["images"], row["expected"]) == (
    "DUT-O",
    "missing",
    "0",
    "5166",
  )
  assert row["maxF"] == row["MAE"] == row["Sm"] == "" and "missing" in row["note"]


def test_the_count_check_and_the_published_numbers():
  assert {key: s.expected for key, s in paper.SETS.items()} == COUNTS
  assert {k: (v["maxF"], v["MAE"]) for (variant, k), v in paper.PAPER.items()} == PUBLISHED
  assert {variant for variant, _ in paper.PAPER} == {"resnet50_edge"}  # none without edge

  class Sized:
    def __init__(self, count):
      self.count = count

    def __len__(self):
      return self.count

  def check(key, count):
    (found,) = paper.check_sets({key: key}, load=lambda spec, *dirs: Sized(count))
    return found

  for key, count in COUNTS.items():
    assert check(key, count).status == "complete" and check(key, count).message() == ""
    short = check(key, count - 1)
    assert short.status == "incomplete"
    assert short.message().startswith(
      f"{paper.SETS[key].title} ({key}): incomplete, expected {count} images, found {count - 1}"
    )
  whole = check("dut_omron", 5168)  # the whole set holds the authors' list
  assert whole.status == "complete" and paper.count_problems([whole]) == []
  assert whole.message() == (
    "DUT-O (dut_omron): 5168 images; the whole set has 5168 images, the authors' list 5166"
  )
  whole = check("hku_is", 4447)  # all of HKU-IS, not its test list
  assert whole.status == "count differs" and "test.lst" in whole.message()
  assert "found 4447" in whole.message()
  checks = paper.check_sets({"ecssd": "ecssd", "sod": "sod"}, load=lambda spec, *d: Sized(1000))
  assert paper.count_problems(checks) == [
    "SOD (sod): not the authors' test list, expected 300 images, found 1000"
  ]

  def missing(spec, *dirs):
    raise FileNotFoundError("sod: nothing found under /downloads")

  (gone,) = paper.check_sets({"sod": "my_sod:test"}, load=missing)
  assert gone.status == "missing"
  assert gone.message() == (
    "SOD (my_sod:test): missing, expected 300 images, found none: "
    "sod: nothing found under /downloads"
  )
  assert paper.parse_sets(["ECSSD", "duts_te=duts:test"]) == {
    "ecssd": "ecssd",
    "duts_te": "duts:test",
  }
  with pytest.raises(paper.UserError, match="not a set of the paper's table"):
    paper.parse_sets(["msra"])


def test_mistakes_are_one_error_line(checkpoints, manual_dir, tmp_path, capsys):
  args = _args(checkpoints, manual_dir, tmp_path / "tfds", "--datasets=sod")
  edge_as_plain = [args[0], f"--checkpoint={checkpoints['resnet50_edge'][2]}", *args[3:]]
  assert paper_table.main(edge_as_plain) == 2
  err = capsys.readouterr().err
  assert "holds PoolNet resnet50_edge, not resnet50 (without edge)" in err
  assert paper_table.main(args[:1] + args[3:]) == 2
  assert "give --checkpoint, --edge_checkpoint or both" in capsys.readouterr().err
  assert paper_table.main(args[:-1] + ["--datasets=sod=sodd"]) == 2
  assert "unknown dataset 'sodd'" in capsys.readouterr().err
  bad = tmp_path / "bad.pth"
  bad.write_bytes(b"not a checkpoint")
  assert paper_table.main([args[0], f"--checkpoint={bad}", *args[3:]]) == 2
  assert capsys.readouterr().err.startswith("error: ")
