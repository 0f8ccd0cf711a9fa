"""`poolnet_jax.predict` and `poolnet_jax.inference` on tiny models, against the model applied
directly; compiled programs counted."""

import os
from pathlib import Path
import subprocess
import sys

import cv2
import jax
import numpy as np
from PIL import Image
import pytest

import poolnet_jax
from poolnet_jax import cli, compilation, inference, ops, predict, predict_io
from random_weights import TINY, random_variables

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _sigmoid(logits):
  return 1 / (1 + np.exp(-np.asarray(logits, np.float64)))


def _save_png(path, array):
  path.parent.mkdir(parents=True, exist_ok=True)
  Image.fromarray(array).save(path)


def _read(path):
  return np.asarray(Image.open(path))


def test_expand_inputs_folders_globs_and_the_output_folder(tmp_path):
  for name in ["a.png", "b.jpg", "sub/c.png", "maps/old.png", "notes.txt", ".hidden.png"]:
    (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / name).write_bytes(b"x")
  items, unmatched = predict_io.expand_inputs(
    [str(tmp_path), str(tmp_path / "*.jpg"), str(tmp_path / "missing*.png")],
    exclude=tmp_path / "maps",
  )
  assert {(p.relative_to(tmp_path).as_posix(), s.as_posix()) for p, s in items} == {
    ("a.png", "a"),
    ("b.jpg", "b"),
    ("sub/c.png", "sub/c"),
  }
  assert len(items) == 3 and unmatched == [str(tmp_path / "missing*.png")]


@pytest.fixture(scope="module")
def tiny_saved(tmp_path_factory):
  model = poolnet_jax.create_model("resnet50", **TINY)
  variables = random_variables(model)
  directory = tmp_path_factory.mktemp("model")
  poolnet_jax.save_pretrained(directory, "resnet50", variables, **TINY)
  return model, variables, directory


def test_folder_with_odd_sizes_small_grey_and_broken_images(tiny_saved, tmp_path, capsys, caplog):
  model, variables, directory = tiny_saved
  rng = np.random.default_rng(0)
  images = tmp_path / "images"
  # Two compiled shapes in all: (2, 121, 133) for a, b, d, e; (2, 111, 122) for c with small,
  # which is below the minimum (111) and runs upsampled to that size.
  rgb = {
    name: rng.integers(0, 256, (*size, 3), dtype=np.uint8)
    for name, size in {
      "a": (121, 133),
      "b": (121, 133),
      "sub/e": (121, 133),
      "c": (111, 122),
      "small": (40, 44),
    }.items()
  }
  for name, array in rgb.items():
    _save_png(images / f"{name}.png", array)
  grey = rng.integers(0, 256, (121, 133), dtype=np.uint8)
  _save_png(images / "d.png", grey)
  rgb["d"] = np.repeat(grey[..., None], 3, axis=-1)
  (images / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
  (images / "trunc.png").write_bytes((images / "a.png").read_bytes()[:80])  # header, no pixels
  output = tmp_path / "maps"

  code = predict.main(
    [
      "predict",
      f"--checkpoint={directory}",
      str(images),
      f"--output={output}",
      "--batch_size=2",
      "--cutout",
      "--overlay",
    ]
  )

  captured = capsys.readouterr()
  assert code == 1  # two inputs failed; the others are written
  assert "broken.jpg" in captured.err and "trunc.png" in captured.err
  assert "6 of 8 images written" in captured.out
  assert captured.out.splitlines()[-1].endswith("from the persistent cache")  # the summary
  assert any("below the network's minimum" in r.getMessage() for r in caplog.records)
  written = {name: _read(output / f"{name}.png") for name in rgb}
  for name, array in rgb.items():
    assert written[name].shape == array.shape[:2] and written[name].dtype == np.uint8, name
  assert not (output / "broken.png").exists() and not (output / "trunc.png").exists()
  # Native sizes: the model applied directly, in the CLI's batch shapes.
  apply = jax.jit(model.apply)
  for batch in [("a", "b"), ("d", "sub/e"), ("c",)]:
    expected = _sigmoid(apply(variables, poolnet_jax.preprocess(np.stack([rgb[n] for n in batch]))))
    for name, saliency in zip(batch, expected[..., 0]):
      assert np.abs(written[name] / 255 - saliency).max() <= 1.001 / 255, name
  assert np.ptp(written["a"]) > 150  # not a saturated or constant map
  # Below the minimum: 40x44 runs at 111x122 (aligned-corner resizes both ways).
  x = ops.resize_bilinear(poolnet_jax.preprocess(rgb["small"][None]), (111, 122))
  expected = ops.resize_bilinear(_sigmoid(apply(variables, x)).astype(np.float32), (40, 44))
  assert np.abs(written["small"] / 255 - np.asarray(expected)[0, ..., 0]).max() <= 1.001 / 255
  cutout = _read(output / "c_cutout.png")
  assert cutout.shape == (111, 122, 4)
  np.testing.assert_array_equal(cutout[..., :3], rgb["c"])
  np.testing.assert_array_equal(cutout[..., 3], written["c"])
  assert _read(output / "sub" / "e_overlay.png").shape == (121, 133, 3)


@pytest.mark.slow  # four scales: four compiles of the edge model
def test_edge_task_is_the_originals_multiscale_test(tmp_path, capsys):
  model = poolnet_jax.create_model("resnet50_edge", **TINY)
  variables = random_variables(model, seed=1)
  poolnet_jax.save_pretrained(tmp_path / "model", "resnet50_edge", variables, **TINY)
  image = np.random.default_rng(2).integers(0, 256, (224, 230, 3), dtype=np.uint8)
  _save_png(tmp_path / "in" / "photo.png", image)

  code = predict.main(
    [
      "predict",
      f"--checkpoint={tmp_path / 'model'}",
      "--task=edge",
      str(tmp_path / "in" / "photo.png"),
      f"--output={tmp_path / 'edges'}",
    ]
  )
  captured = capsys.readouterr()
  assert code == 0, captured.err
  assert captured.out.splitlines()[-1].startswith("4 programs compiled"), captured.out  # scales

  # The original's protocol with OpenCV: resize the preprocessed image by fx = fy = scale,
  # average sigmoid(fused) and the first three side outputs, min-max with eps 1e-8,
  # resize back, average over scales; the file holds 255 * (1 - edge).
  apply = jax.jit(model.apply, static_argnames=("mode",))
  x = poolnet_jax.preprocess(image)
  total = np.zeros(image.shape[:2], np.float64)
  for scale in (0.5, 1.0, 1.5, 2.0):
    scaled = cv2.resize(x, None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR)
    fused, sides = apply(variables, scaled[None], mode="edge")
    edge = sum(_sigmoid(o)[0, ..., 0] for o in (fused, *sides[:3])) / 4
    edge = (edge - edge.min() + 1e-8) / (edge.max() - edge.min() + 1e-8)
    total += cv2.resize(edge.astype(np.float32), (230, 224), interpolation=cv2.INTER_LINEAR)
  expected = 1 - total / 4
  written = _read(tmp_path / "edges" / "photo.png") / 255
  assert written.shape == (224, 230)
  assert np.abs(written - expected).max() <= 1.001 / 255
  assert written.std() > 0.02


@pytest.mark.slow  # a full-size VGG-16 (210 MB .pth) compiles
def test_original_pth_checkpoint_directly(tmp_path, capsys):
  model = poolnet_jax.create_model("vgg16")  # .pth files hold full-size variants only
  variables = random_variables(model)
  poolnet_jax.save_torch_checkpoint(tmp_path / "final.pth", "vgg16", variables)
  image = np.random.default_rng(3).integers(0, 256, (113, 120, 3), dtype=np.uint8)
  _save_png(tmp_path / "photo.png", image)

  code = predict.main(
    [
      "predict",
      f"--checkpoint={tmp_path / 'final.pth'}",
      str(tmp_path / "photo.png"),
      f"--output={tmp_path / 'maps'}",
    ]
  )
  assert code == 0, capsys.readouterr().err
  expected = _sigmoid(jax.jit(model.apply)(variables, poolnet_jax.preprocess(image[None])))
  written = _read(tmp_path / "maps" / "photo.png") / 255
  assert np.abs(written - expected[0, ..., 0]).max() <= 1.001 / 255


def test_command_line_errors(tiny_saved, tmp_path, capsys):
  _, _, directory = tiny_saved
  assert predict.main(["predict", str(tmp_path)]) == 2
  assert "--checkpoint is required" in capsys.readouterr().err
  assert predict.main(["predict", f"--checkpoint={directory}", str(tmp_path / "none*.png")]) == 2
  assert "no images found" in capsys.readouterr().err
  # The real entry point: exit code and message of an edge run on a saliency model.
  _save_png(tmp_path / "x.png", np.zeros((120, 120, 3), np.uint8))
  result = subprocess.run(
    [
      sys.executable,
      "-m",
      "poolnet_jax.predict",
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
    _save_png(root / name, rng.integers(0, 256, (*size, 3), dtype=np.uint8))
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
  items, _ = predict_io.expand_inputs([str(tmp_path / "y")])
  predict_io.check_outputs(items, out)  # without --cutout: no collision
  with pytest.raises(cli.UserError, match="a_cutout.png .*is also the output for"):
    predict_io.check_outputs(items, out, cutout=True)
  # An output that needs a folder where a file is.
  out.mkdir()
  (out / "sub").write_bytes(b"a file")
  _photos(tmp_path / "tree/sub", ["c.png"])
  items, _ = predict_io.expand_inputs([str(tmp_path / "tree")])
  with pytest.raises(cli.UserError, match="needs the folder .*sub, which is a file"):
    predict_io.check_outputs(items, out)


def test_one_file_reached_twice_is_one_input(tmp_path, monkeypatch):
  _photos(tmp_path / "p", ["a.png"])
  monkeypatch.chdir(tmp_path)
  items, unmatched = predict_io.expand_inputs(
    ["p/a.png", "./p/a.png", str(tmp_path / "p"), "p/*.png"]
  )
  assert [(str(path), str(stem)) for path, stem in items] == [("p/a.png", "a")]
  assert not unmatched
  predict_io.check_outputs(items, tmp_path / "out", cutout=True, overlay=True)  # no collision


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
  real = inference.compiled_apply(model)
  # big fails at any batch size; the c pair only as a batch of two (then one at a time works).
  fails = lambda x: x.shape[1:3] == (130, 140) or x.shape[:3] == (2, 111, 122)
  monkeypatch.setattr(inference, "compiled_apply", lambda _: _raising_apply(real, fails))
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
    expected = _sigmoid(apply(variables, poolnet_jax.preprocess(rgb[None])))[0, ..., 0]
    assert np.abs(_read(out / f"{name}.png") / 255 - expected).max() <= 1.001 / 255


def test_run_size_with_max_size():
  model = poolnet_jax.create_model("resnet50", **TINY)
  predictor = inference.Predictor(model, {}, max_size=1024)
  assert predictor.run_size((4000, 6000)) == (683, 1024)
  assert predictor.run_size((6000, 4000)) == (1024, 683)
  assert predictor.run_size((800, 1024)) == (800, 1024)
  assert predictor.run_size((100, 20000)) == (111, 22200)  # the minimum wins
  assert inference.Predictor(model, {}, max_size=0).run_size((4000, 6000)) == (4000, 6000)
  rounded = inference.Predictor(model, {}, max_size=1024, size_multiple=32)
  assert rounded.run_size((4000, 6000)) == (672, 1024)  # 683 -> 21 * 32, after max_size
  assert rounded.run_size((40, 44)) == (128, 128)  # up to 128 >= 111: 128x141 -> 128x128
  limit = inference.batch_limit(predictor)  # about max_size^2 pixels per batch
  assert limit((300, 400)) == 8 and limit((4000, 6000)) == 1


def test_max_size_scales_large_images_down_and_maps_back_up(tiny_saved, tmp_path, capsys, caplog):
  model, variables, directory = tiny_saved
  rgb = np.random.default_rng(7).integers(0, 256, (242, 266, 3), dtype=np.uint8)
  _save_png(tmp_path / "large.png", rgb)

  code = predict.main(
    [
      "predict",
      f"--checkpoint={directory}",
      str(tmp_path / "large.png"),
      f"--output={tmp_path / 'maps'}",
      "--max_size=133",
    ]
  )

  assert code == 0, capsys.readouterr().err
  assert any("larger than max_size 133: run at 121x133" in r.getMessage() for r in caplog.records)
  # Reference: PIL's antialiased bilinear down to 121x133, the model, the map resized back
  # with aligned corners.
  small = np.asarray(Image.fromarray(rgb).resize((133, 121), Image.BILINEAR))
  logits = jax.jit(model.apply)(variables, poolnet_jax.preprocess(small[None]))
  expected = ops.resize_bilinear(_sigmoid(logits).astype(np.float32), (242, 266))[0, ..., 0]
  written = _read(tmp_path / "maps" / "large.png")
  assert written.shape == (242, 266)
  assert np.abs(written / 255 - np.asarray(expected)).max() <= 1.001 / 255


# Compiled programs: counted, none needless; --size_multiple.


def _programs(since):
  return {name: n for name, n in compilation.snapshot().minus(since).programs.items() if n}


def test_compiled_programs_are_counted_exactly(tiny_saved):
  model, variables, _ = tiny_saved
  predictor = inference.Predictor(model, variables)
  rng = np.random.default_rng(8)
  before = compilation.snapshot()
  for size in [(113, 119), (114, 120), (115, 121), (113, 119)]:  # three distinct shapes
    predictor.saliency(rng.integers(0, 256, (1, *size, 3), dtype=np.uint8))
  assert _programs(before) == {"jit(apply)": 3}
  assert compilation.summary(since=before).startswith("3 programs compiled in ")


def test_a_short_last_batch_is_padded_and_exact_sizes_are_exact(tiny_saved, tmp_path):
  model, variables, _ = tiny_saved
  rng = np.random.default_rng(9)
  images = [rng.integers(0, 256, (117, 126, 3), dtype=np.uint8) for _ in range(3)]
  paths = []
  for index, image in enumerate(images):
    paths.append(tmp_path / f"{index}.png")
    _save_png(paths[-1], image)
  predictor = inference.Predictor(model, variables, size_multiple=0)
  before = compilation.snapshot()

  done = list(inference.predict_files(predictor, paths, batch_size=2))

  assert _programs(before) == {"jit(apply)": 1}  # (2, 117, 126): the third runs padded
  assert [path for path, _, _ in done] == paths
  # Bit for bit the model's own maps at the native size, in the batches that ran.
  apply = jax.jit(model.apply)
  for batch in [(0, 1), (2, 2)]:  # the padding: image 2 again
    x = poolnet_jax.preprocess(np.stack([images[k] for k in batch]))
    expected = _sigmoid(apply(variables, x))[..., 0]
    for k, saliency in list(zip(batch, expected))[: len(set(batch))]:
      np.testing.assert_array_equal(done[k][2], saliency)
      np.testing.assert_array_equal(done[k][1], images[k])


def test_size_multiple_rounds_run_sizes_and_maps_come_back_at_each_size(
  tiny_saved, tmp_path, capsys
):
  model, variables, directory = tiny_saved
  rng = np.random.default_rng(10)
  sizes = {"a": (121, 133), "b": (123, 131), "small": (40, 44)}
  rgb = {name: rng.integers(0, 256, (*size, 3), dtype=np.uint8) for name, size in sizes.items()}
  for name, image in rgb.items():
    _save_png(tmp_path / "in" / f"{name}.png", image)

  code = predict.main(
    [
      "predict",
      f"--checkpoint={directory}",
      str(tmp_path / "in"),
      f"--output={tmp_path / 'maps'}",
      "--size_multiple=16",
    ]
  )

  out = capsys.readouterr().out
  assert code == 0
  # a and b both run at 128x128 (one batch); small scaled up to 112 (the first multiple of 16
  # above the minimum 111), 112x123, then 112x128.
  assert out.splitlines()[-1].startswith("2 programs compiled in "), out
  apply = jax.jit(model.apply)
  for names, run in [(("a", "b"), (128, 128)), (("small",), (112, 128))]:
    x = np.concatenate(
      [ops.resize_bilinear(poolnet_jax.preprocess(rgb[n][None]), run) for n in names]
    )
    probabilities = _sigmoid(apply(variables, x)).astype(np.float32)
    for name, saliency in zip(names, probabilities):
      written = _read(tmp_path / "maps" / f"{name}.png")
      assert written.shape == sizes[name]  # the image's own size
      expected = np.asarray(ops.resize_bilinear(saliency[None], sizes[name]))[0, ..., 0]
      assert np.abs(written / 255 - expected).max() <= 1.001 / 255, name


def test_edges_past_max_size_run_once_even_where_the_minimum_wins(monkeypatch):
  model = poolnet_jax.create_model("resnet50_edge", **TINY)
  predictor = inference.Predictor(model, {}, max_size=200)
  seen = []
  monkeypatch.setattr(
    predictor, "_edges", lambda image: seen.append(image.shape) or np.zeros(image.shape[:2])
  )
  # 400 > 200, but 200/400 would take the short side below 111: it runs at 111x740, once.
  assert predictor.edges(np.zeros((60, 400, 3), np.uint8)).shape == (60, 400)
  assert seen == [(111, 740, 3)]


# Ordinary mistakes: one line, exit 2.


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
