"""poolnet_jax.cli.inspect_pth: checkpoints written by torch and by the project's writer, bad files."""

import collections
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import poolnet_jax
from reference import torch_poolnet
from poolnet_jax.cli import inspect_pth as inspect_cli
from poolnet_jax.weights.inspector import inspect_checkpoint
from poolnet_jax.weights.torch_io import mapping
from poolnet_jax.weights.torch_io.pth_writer import write_state_dict
from random_weights import TINY, random_variables

REPO = Path(__file__).resolve().parents[1]


def _torch_state_dict(name):
  """The torch reference's state_dict names and shapes, every tensor a broadcast zero
  (a file of a few kB that reads back as the full-size arrays)."""
  with torch.device("meta"):
    model = torch_poolnet.build(name)
  return collections.OrderedDict(
    (k, torch.zeros((), dtype=v.dtype).expand(v.shape)) for k, v in model.state_dict().items()
  )


def _run_cli(capsys, *args):
  code = inspect_cli.main(["inspect", *map(str, args)])
  out, err = capsys.readouterr()
  return code, out, err


@pytest.mark.parametrize("name,fmt", [("resnet50_edge", "zip"), ("vgg16", "legacy")])
def test_torch_checkpoint_lists_every_tensor_and_its_variant(tmp_path, capsys, name, fmt):
  state = _torch_state_dict(name)
  path = tmp_path / "final.pth"
  torch.save(state, path, _use_new_zipfile_serialization=fmt == "zip")
  code, out, _ = _run_cli(capsys, path, "--json")
  assert code == 0
  report = json.loads(out)
  assert (report["variant"], report["matches"], report["format"]) == (name, True, fmt)
  assert report["model"] == poolnet_jax.ModelSpec(name).to_json() and report["prefix"] == ""
  assert [(t["name"], tuple(t["shape"]), t["dtype"]) for t in report["tensors"]] == [
    (k, tuple(v.shape), str(v.dtype).replace("torch.", "")) for k, v in state.items()
  ]
  assert report["values"] == sum(v.numel() for v in state.values())
  code, out, _ = _run_cli(capsys, path)
  assert code == 0
  assert f"PoolNet variant: {name} (every name and shape matches)" in out
  assert out.count("\n") == len(state) + 2


def test_nearest_variant_and_what_differs(tmp_path, capsys):
  state = _torch_state_dict("resnet50")
  dropped = list(state)[:7]
  for key in dropped:
    del state[key]
  state["base.resnet.conv1.extra"] = torch.zeros(3)
  state["score.score.weight"] = torch.zeros(1, 64, 1, 1)  # model: (1, 128, 1, 1)
  state = collections.OrderedDict(("module." + k, v) for k, v in state.items())
  path = tmp_path / "odd.pth"
  torch.save(state, path)
  report = inspect_checkpoint(path)
  assert (report.variant, report.matches, report.prefix) == ("resnet50", False, "module.")
  assert report.missing == dropped
  assert report.unexpected == ["base.resnet.conv1.extra"]
  assert report.mis_shaped == ["score.score.weight: file (1, 64, 1, 1), model (1, 128, 1, 1)"]
  code, out, _ = _run_cli(capsys, path)
  assert code == inspect_cli.NO_VARIANT == 1
  assert "no PoolNet variant matches; nearest: resnet50" in out
  assert f"7 missing: {', '.join(dropped[:5])} (and 2 more)" in out
  assert "1 unexpected: base.resnet.conv1.extra" in out
  assert "nn.DataParallel's 'module.' prefix" in out


def test_small_model_from_the_project_writer_is_recognised(tmp_path):
  model = poolnet_jax.create_model("resnet50", **TINY)
  state = mapping.to_state_dict(random_variables(model))
  path = tmp_path / "tiny.pth"
  write_state_dict(path, state)
  report = inspect_checkpoint(path)
  assert report.matches and report.variant == "resnet50"
  assert report.spec == poolnet_jax.ModelSpec("resnet50", width=0.125, stages=(1, 1, 1, 1))
  assert [(t.name, t.shape) for t in report.tensors] == [(k, v.shape) for k, v in state.items()]
  assert report.tensors[-1].dtype == "float32"
  assert {t.dtype for t in report.tensors if t.name.endswith("num_batches_tracked")} == {"int64"}
  # The full-size variants alone would not match it.
  assert any(mapping.mismatch(state, mapping.expected_state_dict("resnet50")))


class _Payload:
  def __init__(self, fn, *args):
    self.fn, self.args = fn, args

  def __reduce__(self):
    return self.fn, self.args


def _cli_subprocess(path, *flags):
  env = dict(os.environ, PYTHONPATH=str(REPO))
  return subprocess.run(
    [sys.executable, "-m", "poolnet_jax.cli.inspect_pth", str(path), *flags],
    capture_output=True,
    text=True,
    env=env,
    cwd=REPO,
    timeout=120,
    check=False,
  )


@pytest.mark.parametrize("fmt", ["zip", "legacy"])
def test_malicious_pickle_is_refused_in_one_line(tmp_path, fmt):
  marker = tmp_path / "pwned"
  path = tmp_path / "evil.pth"
  torch.save(
    {"w": torch.ones(2), "x": _Payload(os.system, f"touch {marker}")},
    path,
    _use_new_zipfile_serialization=fmt == "zip",
  )
  result = _cli_subprocess(path, "--json")
  assert result.returncode == 2
  assert result.stdout == ""
  errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
  assert len(errors) == 1, result.stderr
  assert str(path) in errors[0] and "'posix.system'" in errors[0] and "refused" in errors[0]
  assert "Traceback" not in result.stderr
  assert not marker.exists()


def test_non_checkpoint_files_are_one_line_errors(tmp_path, capsys):
  text = tmp_path / "notes.pth"
  text.write_text("not a checkpoint\n")
  code, out, err = _run_cli(capsys, text)
  assert (code, out) == (2, "")
  assert err == f"error: {text}: not a PyTorch checkpoint (starts with b'not a ch')\n"
  code, _, err = _run_cli(capsys, tmp_path / "missing.pth")
  assert code == 2 and err.startswith("error: ") and "missing.pth" in err
  empty = tmp_path / "empty.pth"
  empty.write_bytes(b"")
  assert _run_cli(capsys, empty)[2] == f"error: {empty}: empty file\n"
  assert _run_cli(capsys)[0] == 2  # no file given


def test_module_name_leaves_the_standard_library_inspect_alone():
  code = (
    "import inspect, poolnet_jax.cli.inspect_pth as ours, poolnet_jax.cli.predict; "
    "assert inspect is not ours and callable(inspect.signature), inspect.__file__"
  )
  result = subprocess.run(
    [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120, check=False
  )
  assert result.returncode == 0, result.stderr
