"""poolnet_jax.cli.export: artifacts that run with jax alone, platforms, ONNX, bad input."""

import json
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import poolnet_jax
from poolnet_jax.cli import export as export_cli
from poolnet_jax.inference import artifact as artifact_lib
from random_weights import TINY, random_variables

SIZES = ((112, 144), (128, 128))

# Runs in a Python that cannot import poolnet_jax: isolated mode (-I: no PYTHONPATH, no
# current folder on sys.path), started in a folder without the repository, and the
# package blocked outright in case it is installed.
JAX_ALONE = textwrap.dedent("""
    import json, sys, time
    sys.modules["poolnet_jax"] = None
    try:
      import poolnet_jax
      sys.exit("poolnet_jax is importable")
    except ImportError:
      pass
    import jax, numpy as np
    report = {}
    for name in sys.argv[1:]:
      start = time.perf_counter()
      with open(name + ".jax", "rb") as file:
        exported = jax.export.deserialize(bytearray(file.read()))
      loaded = time.perf_counter() - start
      np.save(name + ".out.npy", np.asarray(exported.call(np.load(name + ".in.npy"))))
      report[name] = {"load_seconds": loaded, "platforms": list(exported.platforms),
                      "input": str(exported.in_avals[0])}
    print(json.dumps(report))
""")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
  """(model, variables, converted model directory) of a small random PoolNet."""
  model = poolnet_jax.create_model("resnet50", **TINY)
  variables = random_variables(model)
  directory = tmp_path_factory.mktemp("tiny") / "converted"
  poolnet_jax.save_pretrained(directory, "resnet50", variables, **TINY)
  return model, variables, directory


def _model_maps(model, variables, rgb):
  apply = jax.jit(lambda x: poolnet_jax.saliency_map(model.apply(variables, x))[..., 0])
  return np.asarray(apply(poolnet_jax.preprocess(jnp.asarray(rgb))))


def _images(size, batch=2, seed=0):
  return np.random.default_rng(seed).integers(0, 256, (batch, *size, 3), dtype=np.uint8)


def _run_export(capsys, *args):
  code = export_cli.main(["export", *map(str, args)])
  out, err = capsys.readouterr()
  return code, out, err


@pytest.mark.slow
def test_artifacts_match_the_model_with_jax_alone(tiny, tmp_path, capsys):
  model, variables, directory = tiny
  out = tmp_path / "exported"
  sizes = ",".join(f"{h}x{w}" for h, w in SIZES)
  code, printed, _ = _run_export(capsys, directory, out, "--sizes", sizes)
  assert code == 0, printed
  index = json.loads((out / "index.json").read_text())
  assert index["platforms"] == ["cpu", "cuda"]
  assert index["model"] == {
    "variant": "resnet50",
    "width": 0.125,
    "stages": [1, 1, 1, 1],
    "resnet_style": "caffe",
    "dtype": "float32",
  }
  assert index["versions"]["jax"] == jax.__version__
  assert [(e["height"], e["width"], e["file"]) for e in index["sizes"]] == [
    (h, w, f"{h}x{w}.jax") for h, w in SIZES
  ]
  batches = {f"{h}x{w}": _images((h, w), batch=b) for (h, w), b in zip(SIZES, (2, 3))}
  for name, rgb in batches.items():
    np.save(out / f"{name}.in.npy", rgb)
  run = subprocess.run(
    [sys.executable, "-I", "-c", JAX_ALONE, *batches],
    cwd=out,
    capture_output=True,
    text=True,
    timeout=300,
    check=False,
  )
  assert run.returncode == 0, run.stderr
  report = json.loads(run.stdout.splitlines()[-1])
  for entry in index["sizes"]:
    name = f"{entry['height']}x{entry['width']}"
    got = np.load(out / f"{name}.out.npy")
    want = _model_maps(model, variables, batches[name])
    assert got.shape == want.shape == batches[name].shape[:3] and got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6, err_msg=name)
    assert 0.01 < want.std()  # maps that vary, not a constant
    assert report[name]["platforms"] == ["cpu", "cuda"]
    assert entry["bytes"] == (out / entry["file"]).stat().st_size
    print(f"{name}: {entry['bytes']:,} bytes, loaded in {report[name]['load_seconds']:.3f} s")


def test_artifact_for_another_platform_names_it(tiny, tmp_path):
  model, variables, _ = tiny
  path = tmp_path / "cuda_only.jax"
  path.write_bytes(artifact_lib.export_saliency(model, variables, SIZES[0], ("cuda",)).serialize())
  artifact = poolnet_jax.load_exported(path)
  assert artifact.platforms == ("cuda",) and artifact.size == SIZES[0]
  with pytest.raises(
    artifact_lib.PlatformMismatch,
    match=r"cuda_only\.jax was exported for cuda only; JAX here runs on cpu",
  ):
    artifact(_images(SIZES[0], batch=1))
  with pytest.raises(artifact_lib.ExportError, match=r"takes uint8 RGB images \(N, 112, 144, 3\)"):
    artifact(_images((128, 144), batch=1))
  garbage = tmp_path / "notes.jax"
  garbage.write_text("hello")
  with pytest.raises(artifact_lib.ExportError, match="notes.jax: not a jax.export artifact"):
    poolnet_jax.load_exported(garbage)


def test_height_and_width_cannot_be_symbolic(tiny):
  """What the docs say: the network compares concrete sizes (and builds numpy matrices)."""
  model, variables, _ = tiny
  spec = jax.ShapeDtypeStruct(jax.export.symbolic_shape("b, h, w, 3"), jnp.uint8)
  function = jax.jit(lambda rgb: artifact_lib.saliency_function(model, variables)(rgb[0]))
  with pytest.raises(Exception, match=r"Symbolic dimension comparison 'w' < 'h' is inconclusive"):
    jax.export.export(function, platforms=("cpu",))(spec)


def test_batch_is_symbolic_and_platforms_recorded(tiny):
  model, variables, _ = tiny
  exported = artifact_lib.export_saliency(model, variables, SIZES[1], ("cpu", "cuda", "tpu"))
  assert exported.platforms == ("cpu", "cuda", "tpu")
  (aval,) = exported.in_avals
  assert str(aval.shape[0]) == "b" and aval.shape[1:] == (128, 128, 3) and aval.dtype == np.uint8
  assert exported.out_avals[0].dtype == np.float32


@pytest.mark.parametrize(
  "args,message",
  [
    (["--sizes", "112x"], "size '112x' is not HEIGHTxWIDTH"),
    (["--sizes", "64x64"], "size 64x64 is below the smallest input PoolNet-resnet50 takes, 111"),
    (["--platforms", "cpu,gpu"], "platforms 'cpu,gpu': expected distinct names among cpu, cuda"),
    (["--format", "tflite"], "tflite"),
  ],
)
def test_bad_flags_are_one_line_errors(tiny, tmp_path, capsys, args, message):
  code, out, err = _run_export(capsys, tiny[2], tmp_path / "out", *args)
  assert (code, out) == (2, "")
  assert err.startswith("error: ") and message in err and err.count("\n") == 1


def test_out_must_be_new_or_empty(tiny, tmp_path, capsys):
  (tmp_path / "taken").mkdir()
  (tmp_path / "taken" / "keep.txt").write_text("mine")
  code, _, err = _run_export(capsys, tiny[2], tmp_path / "taken")
  assert code == 2 and "is not empty; pass --overwrite" in err
  assert (tmp_path / "taken" / "keep.txt").read_text() == "mine"
  code, _, err = _run_export(capsys, tmp_path / "missing", tmp_path / "out")
  assert code == 2 and "missing" in err


def test_onnx_without_jax2onnx_says_how_to_install(tiny, tmp_path, capsys, monkeypatch):
  monkeypatch.setitem(sys.modules, "jax2onnx", None)
  code, _, err = _run_export(capsys, tiny[2], tmp_path / "out", "--format", "onnx")
  assert code == 2 and "--format onnx needs jax2onnx" in err and "pip install" in err
  assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_onnx_matches_the_model_in_onnxruntime(tiny, tmp_path):
  import onnxruntime  # pylint: disable=import-outside-toplevel  (requirements-dev.txt)

  model, variables, _ = tiny
  index = artifact_lib.export_directory(model, variables, tmp_path, SIZES, fmt="onnx", batch=2)
  assert index["format"] == "onnx" and index["platforms"] is None
  for entry, seed in zip(index["sizes"], (1, 2)):
    rgb = _images((entry["height"], entry["width"]), seed=seed)
    session = onnxruntime.InferenceSession(
      str(tmp_path / entry["file"]), providers=["CPUExecutionProvider"]
    )
    (got,) = session.run(None, {"rgb": rgb})
    np.testing.assert_allclose(got, _model_maps(model, variables, rgb), rtol=0, atol=5e-6)
    assert entry["onnxruntime_max_difference"] < 5e-6
