"""Original state_dicts <-> Flax variables, strictly checked, for the four variants."""

import functools
import logging

import flax
import jax
import jax.numpy as jnp
import numpy as np

from poolnet_jax.errors import UserError
from poolnet_jax.models import VARIANTS, as_spec, create_model
from poolnet_jax.weights.torch_io import names, variants
from poolnet_jax.weights.torch_io.pth import strip_prefix

SHOWN = 5  # names listed per kind of mismatch


class CheckpointMismatch(UserError):
  """A state_dict that does not fit the model it was meant for."""


def expected_state_dict(spec, **options):
  """{original tensor name: (shape, dtype)} of a ModelSpec (or a variant name and its
  options), in state_dict order."""
  return _expected_state_dict(as_spec(spec, **options))


@functools.lru_cache(maxsize=None)
def _expected_state_dict(spec):
  model = create_model(spec)
  size = model.min_input_size()
  shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0), jnp.zeros((1, size, size, 3)))
  rows = {}
  for path, leaf in jax.tree_util.tree_leaves_with_path(shapes):
    path = tuple(k.key for k in path)
    shape = leaf.shape if len(leaf.shape) != 4 else tuple(leaf.shape[i] for i in (3, 2, 0, 1))
    rows[names.flax_to_torch(path)] = (shape, "int64" if leaf.dtype == jnp.int32 else "float32")
  return dict(sorted(rows.items(), key=lambda kv: names.state_dict_order(kv[0])))


def mismatch(state_dict, expected):
  """(missing names, unexpected names, shape mismatches) of a state_dict against `expected`."""
  missing = [k for k in expected if k not in state_dict]
  unexpected = [k for k in state_dict if k not in expected]
  shapes = [
    f"{k}: file {np.shape(state_dict[k])}, model {expected[k][0]}"
    for k in expected
    if k in state_dict and np.shape(state_dict[k]) != expected[k][0]
  ]
  return missing, unexpected, shapes


def describe(label, items):
  if not items:
    return ""
  more = f" (and {len(items) - SHOWN} more)" if len(items) > SHOWN else ""
  return f"\n  {len(items)} {label}: " + ", ".join(items[:SHOWN]) + more


def detect_variant(state_dict):
  """The variant whose tensor names the state_dict has, or the nearest one and why not."""
  scores = {}
  for name in VARIANTS:
    expected = expected_state_dict(name)
    missing, unexpected, shapes = mismatch(state_dict, expected)
    if not (missing or unexpected or shapes):
      return name, None
    scores[name] = (len(missing) + len(unexpected) + len(shapes), missing, unexpected, shapes)
  nearest = min(scores, key=lambda n: scores[n][0])
  return nearest, scores[nearest][1:]


def to_flax(state_dict, name=None, source="state_dict"):
  """An original state_dict -> (variant name, Flax variables), checked strictly.

  `name` (a variant) is detected from the key set when omitted. A `module.`
  prefix (nn.DataParallel) is removed. Raises CheckpointMismatch listing missing,
  unexpected and mis-shaped tensors.
  """
  state_dict = strip_prefix(state_dict)
  _refuse_backbone(state_dict, source)
  if name is None:
    name, problems = detect_variant(state_dict)
    if problems:
      raise CheckpointMismatch(
        f"{source} is not a PoolNet checkpoint of any known variant; it most resembles "
        f"{name}:"
        + "".join(
          describe(*p)
          for p in zip(("missing tensors", "unexpected tensors", "shape mismatches"), problems)
        )
      )
  else:
    problems = mismatch(state_dict, expected_state_dict(name))
    if any(problems):
      nearest, _ = detect_variant(state_dict)
      raise CheckpointMismatch(
        f"{source} does not fit PoolNet variant {name} (it most resembles {nearest}):"
        + "".join(
          describe(*p)
          for p in zip(("missing tensors", "unexpected tensors", "shape mismatches"), problems)
        )
      )
  return name, unflatten(state_dict)


def _refuse_backbone(state_dict, source):
  """Raises CheckpointMismatch naming an ImageNet backbone file given as a full PoolNet."""
  kind = variants.backbone_kind(state_dict)
  if kind:
    raise CheckpointMismatch(
      f"{source} is an ImageNet backbone ({kind}), not a full PoolNet checkpoint; to train "
      f"from it use --config.backbone_checkpoint={source}"
    )


def unflatten(state_dict):
  flat = {}
  for key, array in state_dict.items():
    array = np.asarray(array)
    path = names.torch_to_flax(key, array.ndim)
    value = names.torch_to_flax_array(key, array)
    flat[path] = value.astype(np.int32 if value.dtype.kind in "iu" else np.float32)
  return flax.traverse_util.unflatten_dict(flat)


def to_state_dict(variables):
  """Flax variables -> the original's state_dict (names, order, layouts, dtypes)."""
  flat = flax.traverse_util.flatten_dict(jax.device_get(variables))
  rows = {}
  for path, value in flat.items():
    value = np.asarray(value)
    if value.dtype.kind in "iu":
      value = value.astype(np.int64)
    else:
      value = value.astype(np.float32)
    rows[names.flax_to_torch(path)] = np.array(names.flax_to_torch_array(path, value), order="C")
  return dict(sorted(rows.items(), key=lambda kv: names.state_dict_order(kv[0])))


def log_summary(name, variables, source):
  counts = {
    c: sum(int(np.prod(np.shape(x))) for x in jax.tree_util.tree_leaves(v))
    for c, v in variables.items()
  }
  logging.info(
    "%s: PoolNet variant %s, %s",
    source,
    name,
    ", ".join(f"{n:,} values in {c}" for c, n in counts.items()),
  )
