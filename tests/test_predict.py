"""`poolnet_jax.cli.predict` and `poolnet_jax.inference.predictor` on tiny models, against the model applied
directly; compiled programs counted."""

import os

import cv2
import jax
import numpy as np
from PIL import Image
import pytest

import poolnet_jax
from poolnet_jax.cli import predict
from poolnet_jax.imaging import ops
from poolnet_jax.inference import paths, predictor as predictor_lib
from poolnet_jax.runtime import compilation
from image_files import read_png, save_png, sigmoid
from random_weights import TINY, random_variables

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_expand_inputs_folders_globs_and_the_output_folder(tmp_path):
  for name in ["a.png", "b.jpg", "sub/c.png", "maps/old.png", "notes.txt", ".hidden.png"]:
    (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / name).write_bytes(b"x")
  items, unmatched = paths.expand_inputs(
    [str(tmp_path), str(tmp_path / "*.jpg"), str(tmp_path / "missing*.png")],
    exclude=tmp_path / "maps",
  )
  assert {(p.relative_to(tmp_path).as_posix(), s.as_posix()) for p, s in items} == {
    ("a.png", "a"),
    ("b.jpg", "b"),
    ("sub/c.png", "sub/c"),
  }
  assert len(items) == 3 and unmatched == [str(tmp_path / "missing*.png")]


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
    save_png(images / f"{name}.png", array)
  grey = rng.integers(0, 256, (121, 133), dtype=np.uint8)
  save_png(images / "d.png", grey)
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
  written = {name: read_png(output / f"{name}.png") for name in rgb}
  for name, array in rgb.items():
    assert written[name].shape == array.shape[:2] and written[name].dtype == np.uint8, name
  assert not (output / "broken.png").exists() and not (output / "trunc.png").exists()
  # Native sizes: the model applied directly, in the CLI's batch shapes.
  apply = jax.jit(model.apply)
  for batch in [("a", "b"), ("d", "sub/e"), ("c",)]:
    expected = sigmoid(apply(variables, poolnet_jax.preprocess(np.stack([rgb[n] for n in batch]))))
    for name, saliency in zip(batch, expected[..., 0]):
      assert np.abs(written[name] / 255 - saliency).max() <= 1.001 / 255, name
  assert np.ptp(written["a"]) > 150  # not a saturated or constant map
  # Below the minimum: 40x44 runs at 111x122 (aligned-corner resizes both ways).
  x = ops.resize_bilinear(poolnet_jax.preprocess(rgb["small"][None]), (111, 122))
  expected = ops.resize_bilinear(sigmoid(apply(variables, x)).astype(np.float32), (40, 44))
  assert np.abs(written["small"] / 255 - np.asarray(expected)[0, ..., 0]).max() <= 1.001 / 255
  cutout = read_png(output / "c_cutout.png")
  assert cutout.shape == (111, 122, 4)
  np.testing.assert_array_equal(cutout[..., :3], rgb["c"])
  np.testing.assert_array_equal(cutout[..., 3], written["c"])
  assert read_png(output / "sub" / "e_overlay.png").shape == (121, 133, 3)


@pytest.mark.slow  # four scales: four compiles of the edge model
def test_edge_task_is_the_originals_multiscale_test(tmp_path, capsys):
  model = poolnet_jax.create_model("resnet50_edge", **TINY)
  variables = random_variables(model, seed=1)
  poolnet_jax.save_pretrained(tmp_path / "model", "resnet50_edge", variables, **TINY)
  image = np.random.default_rng(2).integers(0, 256, (224, 230, 3), dtype=np.uint8)
  save_png(tmp_path / "in" / "photo.png", image)

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
    edge = sum(sigmoid(o)[0, ..., 0] for o in (fused, *sides[:3])) / 4
    edge = (edge - edge.min() + 1e-8) / (edge.max() - edge.min() + 1e-8)
    total += cv2.resize(edge.astype(np.float32), (230, 224), interpolation=cv2.INTER_LINEAR)
  expected = 1 - total / 4
  written = read_png(tmp_path / "edges" / "photo.png") / 255
  assert written.shape == (224, 230)
  assert np.abs(written - expected).max() <= 1.001 / 255
  assert written.std() > 0.02


@pytest.mark.slow  # a full-size VGG-16 (210 MB .pth) compiles
def test_original_pth_checkpoint_directly(tmp_path, capsys):
  model = poolnet_jax.create_model("vgg16")  # .pth files hold full-size variants only
  variables = random_variables(model)
  poolnet_jax.save_torch_checkpoint(tmp_path / "final.pth", "vgg16", variables)
  image = np.random.default_rng(3).integers(0, 256, (113, 120, 3), dtype=np.uint8)
  save_png(tmp_path / "photo.png", image)

  code = predict.main(
    [
      "predict",
      f"--checkpoint={tmp_path / 'final.pth'}",
      str(tmp_path / "photo.png"),
      f"--output={tmp_path / 'maps'}",
    ]
  )
  assert code == 0, capsys.readouterr().err
  expected = sigmoid(jax.jit(model.apply)(variables, poolnet_jax.preprocess(image[None])))
  written = read_png(tmp_path / "maps" / "photo.png") / 255
  assert np.abs(written - expected[0, ..., 0]).max() <= 1.001 / 255


def test_run_size_with_max_size():
  model = poolnet_jax.create_model("resnet50", **TINY)
  predictor = predictor_lib.Predictor(model, {}, max_size=1024)
  assert predictor.run_size((4000, 6000)) == (683, 1024)
  assert predictor.run_size((6000, 4000)) == (1024, 683)
  assert predictor.run_size((800, 1024)) == (800, 1024)
  assert predictor.run_size((100, 20000)) == (111, 22200)  # the minimum wins
  assert predictor_lib.Predictor(model, {}, max_size=0).run_size((4000, 6000)) == (4000, 6000)
  rounded = predictor_lib.Predictor(model, {}, max_size=1024, size_multiple=32)
  assert rounded.run_size((4000, 6000)) == (672, 1024)  # 683 -> 21 * 32, after max_size
  assert rounded.run_size((40, 44)) == (128, 128)  # up to 128 >= 111: 128x141 -> 128x128
  limit = predictor_lib.batch_limit(predictor)  # about max_size^2 pixels per batch
  assert limit((300, 400)) == 8 and limit((4000, 6000)) == 1


def test_max_size_scales_large_images_down_and_maps_back_up(tiny_saved, tmp_path, capsys, caplog):
  model, variables, directory = tiny_saved
  rgb = np.random.default_rng(7).integers(0, 256, (242, 266, 3), dtype=np.uint8)
  save_png(tmp_path / "large.png", rgb)

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
  expected = ops.resize_bilinear(sigmoid(logits).astype(np.float32), (242, 266))[0, ..., 0]
  written = read_png(tmp_path / "maps" / "large.png")
  assert written.shape == (242, 266)
  assert np.abs(written / 255 - np.asarray(expected)).max() <= 1.001 / 255


# Compiled programs: counted, none needless; --size_multiple.


def _programs(since):
  return {name: n for name, n in compilation.snapshot().minus(since).programs.items() if n}


def test_compiled_programs_are_counted_exactly(tiny_saved):
  model, variables, _ = tiny_saved
  predictor = predictor_lib.Predictor(model, variables)
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
    save_png(paths[-1], image)
  predictor = predictor_lib.Predictor(model, variables, size_multiple=0)
  before = compilation.snapshot()

  done = list(predictor_lib.predict_files(predictor, paths, batch_size=2))

  assert _programs(before) == {"jit(apply)": 1}  # (2, 117, 126): the third runs padded
  assert [path for path, _, _ in done] == paths
  # Bit for bit the model's own maps at the native size, in the batches that ran.
  apply = jax.jit(model.apply)
  for batch in [(0, 1), (2, 2)]:  # the padding: image 2 again
    x = poolnet_jax.preprocess(np.stack([images[k] for k in batch]))
    expected = sigmoid(apply(variables, x))[..., 0]
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
    save_png(tmp_path / "in" / f"{name}.png", image)

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
    probabilities = sigmoid(apply(variables, x)).astype(np.float32)
    for name, saliency in zip(names, probabilities):
      written = read_png(tmp_path / "maps" / f"{name}.png")
      assert written.shape == sizes[name]  # the image's own size
      expected = np.asarray(ops.resize_bilinear(saliency[None], sizes[name]))[0, ..., 0]
      assert np.abs(written / 255 - expected).max() <= 1.001 / 255, name


def test_edges_past_max_size_run_once_even_where_the_minimum_wins(monkeypatch):
  model = poolnet_jax.create_model("resnet50_edge", **TINY)
  predictor = predictor_lib.Predictor(model, {}, max_size=200)
  seen = []
  monkeypatch.setattr(
    predictor, "_edges", lambda image: seen.append(image.shape) or np.zeros(image.shape[:2])
  )
  # 400 > 200, but 200/400 would take the short side below 111: it runs at 111x740, once.
  assert predictor.edges(np.zeros((60, 400, 3), np.uint8)).shape == (60, 400)
  assert seen == [(111, 740, 3)]


# Ordinary mistakes: one line, exit 2.
