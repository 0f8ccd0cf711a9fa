"""The package: a wheel of the tree installs into a fresh venv and its console scripts run."""

import os
from pathlib import Path
import re
import shutil
import subprocess
import sys
import tomllib
import venv
import zipfile

import pytest

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
SCRIPTS = (
  "poolnet-train",
  "poolnet-predict",
  "poolnet-evaluate",
  "poolnet-convert",
  "poolnet-export",
  "poolnet-inspect",
  "poolnet-paper-table",
)


def _pins(path):
  """{name: version} of the `name==version` lines of a requirements file."""
  pins = {}
  for line in path.read_text().splitlines():
    match = re.match(r"^([A-Za-z0-9_.\-]+)==([^\s#;]+)", line)
    if match:
      pins[match.group(1).lower().replace("_", "-")] = match.group(2)
  return pins


def _lower_bounds(requirements):
  bounds = {}
  for requirement in requirements:
    match = re.match(r"^([A-Za-z0-9_.\-]+)(\[[^\]]*\])?>=([^\s,;]+)$", requirement)
    assert match, f"not a plain lower bound: {requirement}"
    bounds[match.group(1).lower().replace("_", "-")] = match.group(3)
  return bounds


def test_dependencies_are_the_pinned_versions_as_lower_bounds():
  project = PYPROJECT["project"]
  assert "dynamic" not in project or "dependencies" not in project["dynamic"]
  assert _lower_bounds(project["dependencies"]) == _pins(REPO / "requirements.txt")
  extras = project["optional-dependencies"]
  dev = {k: v for k, v in _pins(REPO / "requirements-dev.txt").items() if k in ("pytest", "torch")}
  assert _lower_bounds(extras["dev"]) == dev
  jax = _pins(REPO / "requirements.txt")["jax"]
  # The accelerators' extras pin the tested jax: a lower bound would resolve to the newest.
  assert extras["cuda13"] == [f"jax[cuda13]=={jax}"] and extras["tpu"] == [f"jax[tpu]=={jax}"]
  aot = {k: v for k, v in (r.split("==") for r in extras["aot"])}
  assert aot == _pins(REPO / "requirements-aot.txt")
  assert "torch" not in _lower_bounds(project["dependencies"])
  assert sorted(project["scripts"]) == sorted(SCRIPTS)


def test_every_package_folder_is_listed():
  """pyproject lists the packages (the configs' included): none may be left out."""
  found = {
    ".".join(p.parent.relative_to(REPO).parts) for p in (REPO / "poolnet_jax").rglob("__init__.py")
  }
  listed = set(PYPROJECT["tool"]["setuptools"]["packages"])
  assert found == listed and "poolnet_jax.configs" in found
  assert "package-dir" not in PYPROJECT["tool"]["setuptools"]  # a clone imports what a wheel does


def _copy_tree(dst):
  """What the wheel is built from (the package, its configs included, and metadata), no caches."""
  ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
  shutil.copytree(REPO / "poolnet_jax", dst / "poolnet_jax", ignore=ignore)
  for name in ("pyproject.toml", "README.md"):
    shutil.copy2(REPO / name, dst / name)


@pytest.mark.slow
def test_wheel_installs_in_a_fresh_venv_and_its_scripts_run(tmp_path):
  source, wheels, env = tmp_path / "source", tmp_path / "wheels", tmp_path / "venv"
  source.mkdir()
  _copy_tree(source)
  subprocess.run(
    [
      sys.executable,
      "-m",
      "pip",
      "wheel",
      "--no-deps",
      "--no-build-isolation",
      "-q",
      "-w",
      str(wheels),
      str(source),
    ],
    check=True,
    cwd=tmp_path,
  )
  (wheel,) = wheels.glob("poolnet_jax-*.whl")
  names = zipfile.ZipFile(wheel).namelist()
  in_tree = {p.relative_to(REPO).as_posix() for p in (REPO / "poolnet_jax").rglob("*.py")}
  assert in_tree <= set(names)
  assert {
    f"poolnet_jax/configs/{p.name}" for p in (REPO / "poolnet_jax/configs").glob("*.py")
  } <= set(names)
  assert not any(n.startswith(("tests/", "reference/", "bench/", "configs/")) for n in names)

  venv.create(env, system_site_packages=True, with_pip=False)  # deps from this environment
  python = env / "bin" / "python"
  subprocess.run(
    [
      sys.executable,
      "-m",
      "pip",
      "--python",
      str(python),
      "install",
      "--no-deps",
      "--no-index",
      "-q",
      str(wheel),
    ],
    check=True,
    cwd=tmp_path,
  )
  elsewhere = tmp_path / "elsewhere"  # outside the repository: the installed copy runs
  elsewhere.mkdir()
  environ = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
  where = subprocess.run(
    [
      str(python),
      "-c",
      "import poolnet_jax, poolnet_jax.cli.train as t; "
      "print(poolnet_jax.__file__); print(t.DEFAULT_CONFIG)",
    ],
    cwd=elsewhere,
    env=environ,
    capture_output=True,
    text=True,
    check=True,
  )
  package_file, default_config = where.stdout.splitlines()
  assert Path(package_file).is_relative_to(env)
  assert default_config == str(Path(package_file).parent / "configs" / "demo.py")
  for script, says, flag in (
    ("poolnet-predict", "python -m poolnet_jax.cli.predict", "--checkpoint"),
    ("poolnet-inspect", "python -m poolnet_jax.cli.inspect_pth", "--json"),
  ):
    result = subprocess.run(
      [str(env / "bin" / script), "--help"],
      cwd=elsewhere,
      env=environ,
      capture_output=True,
      text=True,
      timeout=120,
      check=False,
    )
    assert result.returncode == 0, result.stderr
    assert says in result.stdout and flag in result.stdout
  # poolnet-train reads the shipped demo config (its `from poolnet_jax.configs import common` included)
  # and stops at the first impossible value, before any work.
  result = subprocess.run(
    [
      str(env / "bin" / "poolnet-train"),
      "--config.batch_size=0",
      "--workdir",
      str(elsewhere / "run"),
    ],
    cwd=elsewhere,
    env=environ,
    capture_output=True,
    text=True,
    timeout=120,
    check=False,
  )
  assert result.returncode == 2, result.stderr
  assert "error: config: batch_size=0 must be an integer >= 1" in result.stderr
  for script in SCRIPTS:
    assert (env / "bin" / script).is_file()


def test_the_projects_own_deprecation_warnings_fail_tests():
  """pyproject's filters: a deprecation raised in the project's code is an error in the
  tests (another library's is only shown)."""
  code = compile("import warnings\nwarnings.warn('old', DeprecationWarning)", "fake.py", "exec")
  with pytest.raises(DeprecationWarning):
    exec(code, {"__name__": "poolnet_jax.fake"})  # pylint: disable=exec-used
  with pytest.warns(DeprecationWarning):
    exec(code, {"__name__": "some_library"})  # pylint: disable=exec-used
