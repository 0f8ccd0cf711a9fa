"""README.md, docs/ and BENCHMARKS.md stay true: the modules they run exist, the files they
cite are there, and the config keys they override are keys of the configs."""

import importlib.util
from pathlib import Path
import re

import pytest

from poolnet_jax.configs import common

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", REPO / "BENCHMARKS.md", *sorted((REPO / "docs").glob("*.md"))]
ROOTS = ("poolnet_jax", "bench", "tests", "reference", "docs")
CITED_FILE = re.compile(rf"(?<![\w/.-])((?:{'|'.join(ROOTS)})/[\w/.-]*\w\.(?:py|md|txt|txtpb))")
RUN_MODULE = re.compile(r"python -m ((?:poolnet_jax|bench)(?:\.\w+)*)")
CONFIG_KEY = re.compile(r"--config\.([A-Za-z_][\w.]*\w)")


def _text(page):
  return page.read_text()


def _importable(module):
  try:
    return importlib.util.find_spec(module) is not None
  except ModuleNotFoundError:  # a parent package that does not exist
    return False


def test_the_pages_are_there():
  assert {p.name for p in PAGES} >= {
    "README.md",
    "BENCHMARKS.md",
    "weights.md",
    "export.md",
    "training.md",
    "inference.md",
  }


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_module_a_page_runs_exists(page):
  missing = sorted({m for m in RUN_MODULE.findall(_text(page)) if not _importable(m)})
  assert missing == []


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_file_a_page_cites_exists(page):
  missing = sorted({f for f in CITED_FILE.findall(_text(page)) if not (REPO / f).exists()})
  assert missing == []


def _keys(config, prefix=""):
  for key, value in config.items():
    yield prefix + key
    if hasattr(value, "items"):
      yield from _keys(value, prefix + key + ".")


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_config_key_a_page_overrides_is_a_key(page):
  keys = set(_keys(common.base()))
  unknown = sorted({k for k in CONFIG_KEY.findall(_text(page)) if k not in keys})
  assert unknown == []


def test_the_checks_catch_what_they_are_for():
  text = "python -m poolnet_jax.predict, python -m poolnet_jax.torch_io.pth, poolnet_jax/models/winograd.py, --config.batchsize=8"
  assert [m for m in RUN_MODULE.findall(text) if not _importable(m)] == [
    "poolnet_jax.predict",
    "poolnet_jax.torch_io.pth",
  ]
  assert [f for f in CITED_FILE.findall(text) if not (REPO / f).exists()]
  assert [k for k in CONFIG_KEY.findall(text) if k not in set(_keys(common.base()))]
