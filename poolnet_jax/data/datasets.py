"""TFDS saliency sets named as on the command line: 'ecssd', 'duts_te', 'name/config:split'.

    builder, split = dataset_builder("duts_te", data_dir)  # checked, nothing built
    source = load_dataset("ecssd", data_dir, manual_dir)    # built first if need be

A name means its test split unless it says `:split`. A real set not built yet
is built from `manual_dir`; the synthetic ones are built on the spot. Every
problem (an unknown name, with the nearest registered ones; an unknown config
or split; a set neither built nor buildable) is a UserError naming the spec.
"""

import contextlib
import difflib
import logging

from poolnet_jax.errors import UserError

DATASET_ALIASES = {"duts_te": "duts:test", "duts-te": "duts:test"}
BUILT_ON_THE_SPOT = ("synthetic_salient",)


def parse_dataset(spec):
  """'ecssd' -> ('ecssd', 'test'); 'duts_te' -> ('duts', 'test'); 'name:split' -> (name, split)."""
  spec = DATASET_ALIASES.get(spec.strip().lower(), spec.strip())
  name, _, split = spec.partition(":")
  if not name:
    raise UserError(f"empty dataset name in {spec!r}")
  return name, split or "test"


def dataset_builder(spec, data_dir=None, manual_dir=None):
  """(TFDS builder, split) of a dataset spec; UserError naming the problem if it cannot be used:
  an unknown name (with the nearest registered ones), an unknown config or split, a real set
  neither built nor buildable (no --manual_dir). Builds nothing."""
  import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
  import poolnet_jax.data  # noqa: F401  (registers the builders)

  name, split = parse_dataset(spec)
  base, _, config = name.partition("/")
  registered = tfds.list_builders(with_community_datasets=False)
  if base not in registered:
    near = difflib.get_close_matches(base, registered + list(DATASET_ALIASES), n=3, cutoff=0.6)
    hint = (
      f"nearest registered names: {', '.join(near)}"
      if near
      else f"the saliency sets here: {', '.join(saliency_sets())}"
    )
    raise UserError(f"{spec}: unknown dataset {base!r}; {hint}")
  try:
    with _quiet_unbuilt_probe():
      builder = tfds.builder(name, data_dir=data_dir)
  except Exception as error:  # tfds raises several types for unknown configs
    configs = [c.name for c in getattr(tfds.builder_cls(base), "BUILDER_CONFIGS", [])]
    if config and config not in configs:
      raise UserError(
        f"{spec}: {base} has no config {config!r} (it has "
        f"{', '.join(configs) or 'none registered'})"
      ) from error
    raise UserError(f"{spec}: {str(error).splitlines()[0]}") from error
  with _quiet_unbuilt_probe():
    prepared = builder.is_prepared()
  if not prepared and base not in BUILT_ON_THE_SPOT and not manual_dir:
    raise UserError(
      f"{spec}: {name} is not built in {builder.data_dir}; pass --manual_dir "
      f"with its downloads to build it (or the right --data_dir)"
    )
  if prepared and split not in builder.info.splits:
    raise UserError(
      f"{spec}: {name} has no split {split!r} (it has {', '.join(sorted(builder.info.splits))})"
    )
  return builder, split


class _UnbuiltVariant(logging.Filter):
  """Drops tfds' warning that a dataset's version folder has no dataset_info.json: tfds
  logs it for every look at a dataset not built yet (the folder need not even exist)."""

  def filter(self, record):
    return "has no dataset_info.json" not in record.getMessage()


@contextlib.contextmanager
def _quiet_unbuilt_probe():
  quiet = _UnbuiltVariant()
  absl_logger = logging.getLogger("absl")  # tfds logs through absl.logging
  absl_logger.addFilter(quiet)
  try:
    yield
  finally:
    absl_logger.removeFilter(quiet)


def saliency_sets():
  """Names of the saliency test sets registered here, with the aliases."""
  from poolnet_jax.data.builders import saliency  # pylint: disable=import-outside-toplevel

  return sorted(
    [b.name for b in saliency.BUILDERS] + list(DATASET_ALIASES)[:1] + list(BUILT_ON_THE_SPOT)
  )


def load_dataset(spec, data_dir=None, manual_dir=None):
  """The random-access TFDS source of a dataset spec, building it first if need be.

  With several processes, process 0 builds first and the others wait for it (a
  shared `data_dir` is then built once); a process that still finds no dataset
  afterwards (a host-local `data_dir`) builds its own copy.
  """
  import jax  # pylint: disable=import-outside-toplevel
  from jax.experimental import multihost_utils  # pylint: disable=import-outside-toplevel

  if jax.process_index() == 0:
    builder, split = _prepared(spec, data_dir, manual_dir)
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices(f"poolnet_jax: dataset {spec} built")
    if jax.process_index() != 0:
      builder, split = _prepared(spec, data_dir, manual_dir)
  return builder.as_data_source(split=split)


def _prepared(spec, data_dir, manual_dir):
  import poolnet_jax.data as data_lib  # pylint: disable=import-outside-toplevel

  builder, split = dataset_builder(spec, data_dir, manual_dir)
  with _quiet_unbuilt_probe():
    data_lib.prepare(builder, manual_dir)
  if split not in builder.info.splits:
    raise UserError(
      f"{spec}: {builder.name} has no split {split!r} (it has "
      f"{', '.join(sorted(builder.info.splits))})"
    )
  return builder, split
