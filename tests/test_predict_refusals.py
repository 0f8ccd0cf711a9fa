"""predict refuses what would lose work before doing any (outputs on inputs or on each
other, a read-only output folder), keeps going past an image that fails, and turns
ordinary mistakes into one error line; its precision and convolution flags reach the
model."""

import os
from pathlib import Path
import subprocess
import sys

import jax
import numpy as np
from PIL import Image
import pytest

import poolnet_jax
from poolnet_jax import cli
from poolnet_jax.cli import predict
from poolnet_jax.inference import paths, predictor as predictor_lib
from image_files import read_png, save_png, sigmoid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_command_line_errors(tiny_saved, tmp_path, capsys):
  _, _, directory = tiny_saved
  assert predict.main(["predict", str(tmp_path)]) == 2
  assert "--checkpoint is required" in capsys.readouterr().err
  assert predict.main(["predict", f"--checkpoint={directory}", str(tmp_path / "none*.png")]) == 2
  assert "no images found" in capsys.readouterr().err
  # The real entry point: exit code and message of an edge run on a saliency model.
  save_png(tmp_path / "x.png", np.zeros((120, 120, 3), np.uint8))
  result = subprocess.run(
    [
      sys.executable,
      "-m",
      "poolnet_jax.cli.predict",
      f"--checkpoint={directory}",
      "--task=edge",
      str(tmp_path / "x.png"),
      f"--output={tmp_path / 'out'}",
    ],
    cwd=ROOT,
    env={**os.environ, "PYTHONPATH": ROOT},
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert result.returncode == 2, result.stderr[-2000:]
  assert "error:" in result.stderr and "saliency-only model" in result.stderr
  assert "Traceback" not in result.stderr


# Nothing lost: outputs planned and checked before any work.


def _photos(root, names, size=(121, 133), seed=5):
  rng = np.random.default_rng(seed)
  for name in names:
    save_png(root / name, rng.integers(0, 256, (*size, 3), dtype=np.uint8))
  return {name: (root / name).read_bytes() for name in names}


def _unchanged(root, before):
  return all((root / name).read_bytes() == data for name, data in before.items())


def test_outputs_on_an_input_are_refused_before_any_work(tiny_saved, tmp_path, capsys):
  _, _, directory = tiny_saved
  photos = tmp_path / "photos"
  before = _photos(photos, ["a.png", "b.png"])
  for inputs in ([str(photos / "a.png")], [str(photos / "*.png")]):  # a file, a glob
    code = predict.main(["predict", f"--checkpoint={directory}", *inputs, f"--output={photos}"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and "Traceback" not in err
    assert f"{photos / 'a.png'} (for {photos / 'a.png'}) is the input" in err
    assert "nothing written" in err
    assert _unchanged(photos, before) and sorted(p.name for p in photos.iterdir()) == [
      "a.png",
      "b.png",
    ]
  # The output folder reached through a link to the input folder: the same files.
  (tmp_path / "link").symlink_to(photos)
  code = predict.main(
    ["predict", f"--checkpoint={directory}", str(photos / "b.png"), f"--output={tmp_path / 'link'}"]
  )
  assert code == 2 and "is the input" in capsys.readouterr().err and _unchanged(photos, before)


def test_outputs_on_each_other_are_refused(tiny_saved, tmp_path, capsys):
  _, _, directory = tiny_saved
  _photos(tmp_path / "x", ["a.png"])
  _photos(tmp_path / "y", ["a.jpg", "a_cutout.png"])
  out = tmp_path / "out"
  code = predict.main(
    [
      "predict",
      f"--checkpoint={directory}",
      str(tmp_path / "x/a.png"),
      str(tmp_path / "y/a.jpg"),
      f"--output={out}",
    ]
  )
  err = capsys.readouterr().err
  assert code == 2
  assert (
    f"{out / 'a.png'} (for {tmp_path / 'y/a.jpg'}) is also the output for "
    f"{tmp_path / 'x/a.png'}" in err
  )
  assert not out.exists()  # nothing written, not even the folder
  # A map named like another input's cutout.
  items, _ = paths.expand_inputs([str(tmp_path / "y")])
  paths.check_outputs(items, out)  # without --cutout: no collision
  with pytest.raises(cli.UserError, match="a_cutout.png .*is also the output for"):
    paths.check_outputs(items, out, cutout=True)
  # An output that needs a folder where a file is.
  out.mkdir()
  (out / "sub").write_bytes(b"a file")
  _photos(tmp_path / "tree/sub", ["c.png"])
  items, _ = paths.expand_inputs([str(tmp_path / "tree")])
  with pytest.raises(cli.UserError, match="needs the folder .*sub, which is a file"):
    paths.check_outputs(items, out)


def test_one_file_reached_twice_is_one_input(tmp_path, monkeypatch):
  _photos(tmp_path / "p", ["a.png"])
  monkeypatch.chdir(tmp_path)
  items, unmatched = paths.expand_inputs(["p/a.png", "./p/a.png", str(tmp_path / "p"), "p/*.png"])
  assert [(str(path), str(stem)) for path, stem in items] == [("p/a.png", "a")]
  assert not unmatched
  paths.check_outputs(items, tmp_path / "out", cutout=True, overlay=True)  # no collision


# Images that cannot run; --max_size.


def _raising_apply(real, fails):
  """A stand-in for the compiled apply: XLA's out-of-memory error when `fails(x)`."""

  def apply(variables, x, **kwargs):
    if fails(x):
      raise jax.errors.JaxRuntimeError(
        "RESOURCE_EXHAUSTED: Out of memory while trying to allocate 30.60GiB."
      )
    return real(variables, x, **kwargs)

  return apply


def test_an_image_out_of_memory_is_skipped_and_the_others_finish(
  tiny_saved, tmp_path, capsys, monkeypatch
):
  model, variables, directory = tiny_saved
  images = tmp_path / "images"
  _photos(images, ["a.png", "b.png"], (121, 133), seed=1)
  _photos(images, ["big.png"], (130, 140), seed=2)
  _photos(images, ["c1.png", "c2.png"], (111, 122), seed=3)
  real = predictor_lib.compiled_apply(model)
  # big fails at any batch size; the c pair only as a batch of two (then one at a time works).
  fails = lambda x: x.shape[1:3] == (130, 140) or x.shape[:3] == (2, 111, 122)
  monkeypatch.setattr(predictor_lib, "compiled_apply", lambda _: _raising_apply(real, fails))
  out = tmp_path / "maps"

  code = predict.main(
    ["predict", f"--checkpoint={directory}", str(images), f"--output={out}", "--batch_size=2"]
  )

  captured = capsys.readouterr()
  assert code == 1
  assert "4 of 5 images written" in captured.out and "1 failed" in captured.out
  assert f"failed: {images / 'big.png'}: out of memory at 130x140" in captured.err
  assert sorted(p.name for p in out.iterdir()) == ["a.png", "b.png", "c1.png", "c2.png"]
  apply = jax.jit(model.apply)
  for name in ("c1", "c2"):
    rgb = np.asarray(Image.open(images / f"{name}.png"))
    expected = sigmoid(apply(variables, poolnet_jax.preprocess(rgb[None])))[0, ..., 0]
    assert np.abs(read_png(out / f"{name}.png") / 255 - expected).max() <= 1.001 / 255


def _read_only_folder(tmp_path):
  folder = tmp_path / "read_only"
  folder.mkdir()
  folder.chmod(0o555)
  try:
    (folder / "probe").write_bytes(b"")
  except PermissionError:
    return folder
  (folder / "probe").unlink()  # root writes anyway: take a read-only file system
  try:
    Path("/sys/poolnet_jax_probe").write_bytes(b"")
  except OSError:
    return Path("/sys")
  pytest.skip("no read-only folder available")


def test_ordinary_mistakes_are_one_error_line(tiny_saved, tmp_path, capsys):
  _, _, directory = tiny_saved
  _photos(tmp_path / "p", ["a.png"])
  photo = str(tmp_path / "p/a.png")
  workdir = tmp_path / "runs/demo"
  (workdir / "checkpoints").mkdir(parents=True)
  (workdir / "best").mkdir()
  (workdir / "best/poolnet.json").write_text('{"variant": "resnet50", "overrides": {}}')
  (tmp_path / "afile").write_text("x")
  cases = [
    ([f"--checkpoint={tmp_path / 'nope'}", photo], f"{tmp_path / 'nope'}: no such file"),
    (
      [f"--checkpoint={workdir}", photo],
      f"{workdir} is a training workdir; its best model is {workdir / 'best'}",
    ),
    ([f"--checkpoint={tmp_path / 'p'}", photo], "is not a poolnet-jax model directory"),
    (
      [f"--checkpoint={directory}", photo, f"--output={tmp_path / 'afile'}"],
      f"--output {tmp_path / 'afile'}: {tmp_path / 'afile'} is a file, not a folder",
    ),
    (
      [f"--checkpoint={directory}", photo, f"--output={tmp_path / 'afile/maps'}"],
      "is a file, not a folder",
    ),
    (
      [f"--checkpoint={directory}", photo, f"--output={_read_only_folder(tmp_path) / 'maps'}"],
      "cannot write in",
    ),
    ([f"--checkpoint={directory}", photo, "--max_size=-1"], "max_size"),
  ]
  for args, expected in cases:
    assert predict.main(["predict", *args]) == 2, args
    err = capsys.readouterr().err
    assert err.startswith("error: ") and expected in err, (args, err)
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
  assert predict.main(["predict", f"--checkpoint={tmp_path / 'nope'}", photo, "--verbose"]) == 2
  err = capsys.readouterr().err
  assert "Traceback" in err and "FileNotFoundError" in err and "error: " in err


@pytest.mark.parametrize("precision,conv", [("highest", ""), ("default", "xla")])
def test_precision_and_conv_choices_reach_the_model(
  tiny_saved, tmp_path, monkeypatch, precision, conv
):
  _, _, directory = tiny_saved
  _photos(tmp_path / "in", ["a.png"], (112, 112), seed=4)
  seen = []

  def record(predictor, items, *args, **kwargs):
    seen.append((jax.config.jax_default_matmul_precision, predictor.model.conv))
    return {}

  monkeypatch.setattr(predict, "write_maps", record)
  monkeypatch.setenv("POOLNET_JAX_CONV", conv)
  code = predict.main(
    [
      "predict",
      f"--checkpoint={directory}",
      f"--precision={precision}",
      f"--output={tmp_path / 'out'}",
      str(tmp_path / "in"),
    ]
  )
  assert code == 0
  expected_conv = poolnet_jax.models.layers.conv_impl(conv or None)
  assert seen == [(precision, expected_conv)]
