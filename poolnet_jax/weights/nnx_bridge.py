"""PoolNet as a Flax NNX module, weights included, through `flax.nnx.bridge.ToNNX`.

    poolnet = poolnet_jax.load_nnx("converted/")        # or a .pth, or to_nnx(model, variables)
    logits = poolnet(poolnet_jax.preprocess(rgb[None]))  # == model.apply(variables, ...)

The NNX module holds the Linen variables as `nnx.Param` (collection "params")
and `nnx.BatchStat` ("batch_stats", the frozen BatchNorm's statistics) under
the original's module names (`poolnet.base.resnet.conv1.kernel`, ...), so
`nnx.PathContains("base")` selects the backbone. Keyword arguments reach the
Linen `apply` (`poolnet(x, mode="edge")` for edge models).
"""

import flax
from flax import nnx
from flax.nnx import bridge, variablelib
import jax
import jax.numpy as jnp
import numpy as np

from poolnet_jax.models import create_model
from poolnet_jax.weights import pretrained

SHOWN = 5  # names listed per kind of mismatch


class VariablesMismatch(ValueError):
  """Variables that do not fit the model they are given with."""


def _abstract(model):
  """The ToNNX module of `model` with ShapeDtypeStruct leaves (nothing computed)."""
  size = model.min_input_size()
  x = jnp.zeros((1, size, size, 3), jnp.float32)

  def build():
    module = bridge.ToNNX(model, rngs=nnx.Rngs(0)).lazy_init(x)
    module.to_nnx__rngs = None  # the weights come from elsewhere: no random streams kept
    return module

  return nnx.eval_shape(build)


def to_nnx(model, variables):
  """A Linen PoolNet and its variables -> an `nnx.Module` holding them (no initialisation).

  Raises VariablesMismatch naming missing, unexpected and wrong-shape variables.
  """
  graphdef, state = nnx.split(_abstract(model))
  given = {
    tuple(path): value
    for path, value in flax.traverse_util.flatten_dict(jax.device_get(dict(variables))).items()
  }
  leaves, wanted, mis_shaped = [], set(), []
  for path, variable in nnx.to_flat_state(state):
    key = (variablelib.variable_name_from_type(type(variable)), *map(str, path))
    wanted.add(key)
    if key not in given:
      continue
    value = np.asarray(given[key])
    if value.shape != variable.get_value().shape:
      mis_shaped.append(f"{'/'.join(key)}: given {value.shape}, model {variable.get_value().shape}")
      continue
    leaves.append((path, variable.replace(value=jnp.asarray(value, variable.get_value().dtype))))
  problems = (
    ("missing", ["/".join(k) for k in sorted(wanted - set(given))]),
    ("unexpected", ["/".join(k) for k in sorted(set(given) - wanted)]),
    ("wrong shape", mis_shaped),
  )
  if any(items for _, items in problems):
    raise VariablesMismatch(
      f"variables do not fit PoolNet {model.backbone}{' + edge' if model.edge else ''} "
      f"(width {model.width}):"
      + "".join(
        f"\n  {len(items)} {label}: "
        + ", ".join(items[:SHOWN])
        + (f" (and {len(items) - SHOWN} more)" if len(items) > SHOWN else "")
        for label, items in problems
        if items
      )
    )
  return nnx.merge(graphdef, nnx.from_flat_state(leaves))


def create_nnx(name, variables=None, *, seed=0, **overrides):
  """PoolNet variant `name` as an `nnx.Module`: with `variables`, or freshly initialised
  (the original's N(0, 0.01) convolutions; `seed`). `overrides` go to `create_model`.

  An unknown variant name raises ValueError listing the known ones.
  """
  model = create_model(name, **overrides)
  if variables is None:
    size = model.min_input_size()
    variables = jax.jit(model.init)(
      jax.random.PRNGKey(seed), jnp.zeros((1, size, size, 3), jnp.float32)
    )
  return to_nnx(model, variables)


def load_nnx(path):
  """`nnx.Module` of a converted or trained model directory, or of an original `.pth`."""
  return to_nnx(*pretrained.load_pretrained(path))


def to_linen(module):
  """(Linen model, variables) back from a module made by `to_nnx` (e.g. after training)."""
  flat = {
    (variablelib.variable_name_from_type(type(v)), *map(str, path)): np.asarray(v.get_value())
    for path, v in nnx.to_flat_state(nnx.state(module))
  }
  return module.to_nnx__module, flax.traverse_util.unflatten_dict(flat)
