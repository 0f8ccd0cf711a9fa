"""Training configs: overrides through train.py's flag parsing, impossible values, mistakes.

Overrides are parsed by train.py's own parser (in this process); the mistakes
run `python train.py` and read its exit status and stderr.
"""

import logging
import os
import subprocess
import sys
from pathlib import Path

from absl import flags
import jax.numpy as jnp
import ml_collections
import pytest

import poolnet_jax
from poolnet_jax.train import recipe

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted(
  p.name
  for p in (ROOT / "poolnet_jax/configs").glob("*.py")
  if p.stem not in ("common", "__init__")
)
sys.path.insert(0, str(ROOT))
import train  # pylint: disable=wrong-import-position


def parse(monkeypatch, *args):
  """The config train.py makes of its command line `args`."""
  argv = ["train.py", *args]
  monkeypatch.setattr(sys, "argv", argv)  # config_flags reads the overrides from sys.argv
  flag_values = flags.FlagValues()
  train.define_flags(flag_values)
  train.parse_flags(argv, flag_values)
  return flag_values.config


def run_train(*args, timeout=300):
  env = {**os.environ, "PYTHONPATH": str(ROOT)}
  return subprocess.run(
    [sys.executable, str(ROOT / "train.py"), *args],
    cwd=ROOT,
    env=env,
    capture_output=True,
    text=True,
    timeout=timeout,
    check=False,
  )


def test_the_model_is_declared_as_the_spec_of_the_original_network():
  from poolnet_jax.configs import common  # pylint: disable=import-outside-toplevel

  declared = common.base().model.to_dict()
  assert set(declared) == {"variant", *poolnet_jax.models.OPTIONS}
  assert recipe.model_spec(common.base()) == poolnet_jax.models.ModelSpec()  # the original
  model = poolnet_jax.create_model("resnet50")  # create_model's own defaults, independently
  assert jnp.dtype(declared["dtype"]) == jnp.dtype(model.dtype)
  assert declared["width"] == model.width and tuple(declared["stages"]) == tuple(model.stages)
  assert declared["resnet_style"] == model.resnet_style


@pytest.mark.parametrize("name", CONFIGS)
def test_dtype_and_width_override_every_shipped_config(monkeypatch, name):
  config = parse(
    monkeypatch,
    "--config",
    f"poolnet_jax/configs/{name}",
    "--config.model.dtype=bfloat16",
    "--config.model.width=0.5",
  )
  spec = recipe.model_spec(config)
  assert spec.dtype == "bfloat16" and spec.width == 0.5
  model = recipe.create_model_from_config(config)
  assert model.dtype == jnp.bfloat16 and model.width == 0.5
  recipe.check(config, check_datasets=False)


def test_variant_stages_and_resnet_style_override(monkeypatch):
  config = parse(
    monkeypatch,
    "--config",
    "poolnet_jax/configs/resnet50.py",
    "--config.model.variant=resnet50_edge",
    "--config.model.stages=(2,2,2,2)",
    "--config.model.resnet_style=torchvision",
  )
  assert recipe.model_spec(config).options() == {
    "stages": (2, 2, 2, 2),
    "resnet_style": "torchvision",
  }
  model = recipe.create_model_from_config(config)
  assert (model.edge, tuple(model.stages), model.resnet_style) == (
    True,
    (2, 2, 2, 2),
    "torchvision",
  )


def test_a_config_of_before_the_spec_is_told_what_to_write():
  from poolnet_jax.configs import tiny  # pylint: disable=import-outside-toplevel

  fields = tiny.get_config().to_dict()
  fields["model"] = "vgg16"  # a config of its own, not made from common.base()
  config = ml_collections.ConfigDict(fields)
  with pytest.raises(
    recipe.ConfigError,
    match=r"model='vgg16' is not a model spec: write model.variant='vgg16'",
  ):
    recipe.check(config, check_datasets=False)


@pytest.mark.parametrize(
  "key,value,message",
  [
    ("learning_rate", 0.0, "learning_rate=0.0 must be > 0"),
    ("learning_rate", -1e-3, "learning_rate=-0.001 must be > 0"),
    ("batch_size", 0, "batch_size=0 must be an integer >= 1"),
    ("model.variant", "resnet51", "model.variant='resnet51' is not one of resnet50, resnet50_edge"),
    ("model.width", 0.0, "model.width=0.0 must be a number > 0"),
    ("model.stages", (3, 4, 6), r"model.stages=\(3, 4, 6\) must be 4 block counts >= 1"),
    ("model.resnet_style", "timm", "model.resnet_style='timm' is not one of caffe, torchvision"),
    ("iter_size", -2, "iter_size=-2 must be an integer >= 1"),
    ("parallel", "pmapp", "parallel='pmapp' is not one of pmap, shard_map"),
    ("eval_every_steps", 0, "eval_every_steps=0 must be an integer >= 1"),
    ("parallel", "pjit", "parallel='pjit' is not one of pmap, shard_map, jit"),
    ("init", "fixup", "init='fixup' is not one of original, skipinit"),
    ("matmul_precision", "max", "matmul_precision='max' is not one of default, high, highest"),
    ("compile_ahead", "sometimes", "compile_ahead='sometimes' is not one of auto, true, false"),
    ("compile_workers", -1, "compile_workers=-1 must be an integer >= 0"),
    ("profile_steps", (5, 3), r"profile_steps=\(5, 3\) must be \(\) \(off\) or \(first, last\)"),
    ("profile_steps", (0, 3), r"profile_steps=\(0, 3\) must be"),
    ("profile_steps", (4,), r"profile_steps=\(4,\) must be"),
  ],
)
def test_impossible_values_are_refused(key, value, message):
  from poolnet_jax.configs import tiny  # pylint: disable=import-outside-toplevel

  config = tiny.get_config()
  target = config
  for part in key.split(".")[:-1]:
    target = target[part]
  target[key.split(".")[-1]] = value
  with pytest.raises(recipe.ConfigError, match=f"^config: {message}"):
    recipe.check(config, check_datasets=False)


def test_impossible_nested_values_are_refused():
  from poolnet_jax.configs import tiny  # pylint: disable=import-outside-toplevel

  config = tiny.get_config()
  config.model.dtype = "float33"
  config.data.mode = "natve"
  config.data.native_max_rescale = 0.06  # without data.native_multiple
  with pytest.raises(recipe.ConfigError) as error:
    recipe.check(config, check_datasets=False)
  assert "model.dtype='float33' is not one of float32, bfloat16, float16" in str(error.value)
  assert "data.mode='natve' is not one of native, fixed, buckets" in str(error.value)
  assert "data.native_max_rescale=0.06 must be in [0, 1) and needs data.native_multiple > 0" in (
    str(error.value)
  )


def test_unknown_dataset_and_data_dir_that_is_a_file(tmp_path):
  from poolnet_jax.configs import tiny  # pylint: disable=import-outside-toplevel

  config = tiny.get_config()
  config.data_dir = str(tmp_path)
  config.dataset = "duts_tr"
  with pytest.raises(
    recipe.ConfigError,
    match=r"dataset='duts_tr': unknown dataset 'duts_tr'; nearest registered "
    r"names: duts",
  ):
    recipe.check(config)
  (tmp_path / "file").write_text("")
  config.dataset, config.data_dir = "synthetic_salient/tiny", str(tmp_path / "file")
  with pytest.raises(recipe.ConfigError, match=r"data_dir=.*file is a file, not a folder"):
    recipe.check(config)


def test_unknown_key_is_one_line_with_the_nearest_keys():
  result = run_train(
    "--config", "poolnet_jax/configs/tiny.py", "--config.learning_rat=1", "--config.data.mod=fixed"
  )
  assert result.returncode == 2, result.stderr[-2000:]
  assert result.stderr.strip().splitlines() == [
    "error: --config.learning_rat: the config has no key 'learning_rat'; nearest valid keys: "
    "learning_rate"
  ]


def test_value_of_the_wrong_type_is_one_line_naming_the_flag():
  result = run_train("--config", "poolnet_jax/configs/tiny.py", "--config.batch_size=abc")
  assert result.returncode == 2
  assert result.stderr.strip().splitlines() == [
    "error: flag --config.batch_size=abc: invalid literal for int() with base 10: 'abc'"
  ]


def test_missing_config_file_is_one_line():
  result = run_train("--config", "poolnet_jax/configs/nope.py")
  assert result.returncode == 2
  assert result.stderr.strip().splitlines() == [
    "error: --config poolnet_jax/configs/nope.py: no such file"
  ]


def test_impossible_values_stop_train_py_at_start(tmp_path):
  result = run_train(
    "--config",
    "poolnet_jax/configs/tiny.py",
    f"--workdir={tmp_path / 'run'}",
    "--config.learning_rate=-1",
    "--config.batch_size=0",
    "--config.model.dtype=float33",
  )
  assert result.returncode == 2, result.stderr[-2000:]
  last = result.stderr.strip().splitlines()[-1]
  assert last.startswith("error: config: ") and "learning_rate=-1.0 must be > 0" in last
  assert "batch_size=0" in last and "float33" in last and "Traceback" not in result.stderr
  assert not (tmp_path / "run" / "checkpoints").exists()


def test_unknown_dataset_is_one_line_and_verbose_keeps_the_traceback(tmp_path):
  args = (
    "--config",
    "poolnet_jax/configs/tiny.py",
    f"--workdir={tmp_path / 'run'}",
    f"--config.data_dir={tmp_path}",
    "--config.dataset=duts_tr",
  )
  result = run_train(*args)
  assert result.returncode == 2
  assert "Traceback" not in result.stderr
  assert (
    result.stderr.strip()
    .splitlines()[-1]
    .startswith("error: config: dataset='duts_tr': unknown dataset")
  )
  verbose = run_train(*args, "--verbose")
  assert verbose.returncode == 2 and "Traceback" in verbose.stderr


@pytest.mark.parametrize("dtype,warned", [("float16", True), ("bfloat16", False)])
def test_training_in_float16_is_warned_about(dtype, warned, caplog):
  """float16 cannot hold this model's gradients (bench.gradient_range: 2.5 % underflow on
  the full ResNet-50 at scale 1, an overflow at scale 64); bfloat16 can."""
  from poolnet_jax.configs import tiny  # pylint: disable=import-outside-toplevel

  config = tiny.get_config()
  config.model.dtype = dtype
  with caplog.at_level(logging.WARNING):
    recipe.check(config, check_datasets=False)
  found = [r.getMessage() for r in caplog.records if "float16' trains without" in r.getMessage()]
  assert bool(found) == warned, found
