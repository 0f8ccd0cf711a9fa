"""bf16 compute and rematerialisation against float32 without remat, on random weights."""

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import poolnet_jax
from poolnet_jax.models import layers
from poolnet_jax.train import step as step_lib
from poolnet_jax.train import parallel as parallel_lib
from random_weights import TINY, random_variables

# Measured on the tiny models at 128x144 (2026-12-01): logits 4e-3 to 8e-3 relative L2 in bf16,
# gradient 1.3e-2 to 2.2e-2; bf16 keeps 8 bits of mantissa (2^-9 = 2e-3 per rounding).
LOGITS_REL_BF16 = 3e-2
GRAD_REL_BF16 = 8e-2
# Each parameter's gradient on its own (2026-12-07): at most 3.2e-2 with the biases added in
# float32; 0.5 to 0.6 for the score and VGG biases when they were added (and their gradients
# summed over the pixels) in bf16.
LEAF_GRAD_REL_BF16 = 0.1
REMAT_TOL = 1e-6


def _rel(a, b):
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def _inputs(seed=0, shape=(2, 128, 144)):
  rng = np.random.default_rng(seed)
  images = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
  labels = (rng.uniform(size=(*shape, 1)) > 0.6).astype(np.uint8) * 255
  return {"image": images, "label": labels}


def _grads(model, variables, batch, task="saliency"):
  images, labels = step_lib.device_inputs(batch)
  return jax.jit(jax.grad(step_lib.task_loss, argnums=1), static_argnums=(0, 5))(
    model, variables["params"], variables.get("batch_stats", {}), images, labels, task
  )


def _flat(tree):
  return np.concatenate([np.ravel(x) for x in jax.tree_util.tree_leaves(tree)])


@pytest.mark.parametrize("name", ["resnet50", "vgg16_edge"])
def test_bfloat16_logits_and_gradients_near_float32(name):
  f32 = poolnet_jax.create_model(name, conv="xla", **TINY)
  bf16 = poolnet_jax.create_model(name, conv="xla", dtype="bfloat16", **TINY)
  variables = random_variables(f32, seed=3)
  batch = _inputs()
  images = step_lib.device_inputs(batch)[0]
  logits = [jax.jit(m.apply)(variables, images) for m in (f32, bf16)]
  assert logits[1].dtype == jnp.float32  # the logits stay float32
  rel = _rel(logits[1], logits[0])
  print(f"{name}: bf16 logits relative L2 {rel:.2e}")
  assert 0 < rel < LOGITS_REL_BF16, rel
  grads = [_grads(m, variables, batch) for m in (f32, bf16)]
  assert {x.dtype for x in jax.tree_util.tree_leaves(grads[1])} == {jnp.dtype("float32")}
  rel = _rel(_flat(grads[1]), _flat(grads[0]))
  print(f"{name}: bf16 gradient relative L2 {rel:.2e}")
  assert 0 < rel < GRAD_REL_BF16, rel
  pairs = zip(*(jax.tree_util.tree_leaves_with_path(g) for g in grads))
  worst = max((_rel(b, a), jax.tree_util.keystr(path)) for (path, a), (_, b) in pairs if np.any(a))
  assert worst[0] < LEAF_GRAD_REL_BF16, worst


def test_frozen_batchnorm_affine_runs_in_float32():
  """bf16 activations, float32 scale and shift: the result is the float32 product rounded once."""
  bn = layers.FrozenBatchNorm(jnp.bfloat16)
  x = jnp.asarray(np.random.default_rng(0).normal(size=(1, 4, 4, 8)), jnp.bfloat16)
  rng = np.random.default_rng(1)
  params = {
    "scale": rng.uniform(0.5, 2, 8).astype(np.float32),
    "bias": rng.normal(size=8).astype(np.float32),
  }
  stats = {
    "mean": rng.normal(size=8).astype(np.float32),
    "var": rng.uniform(0.1, 3, 8).astype(np.float32),
    "num_batches_tracked": np.zeros((), np.int32),
  }
  y = bn.apply({"params": params, "batch_stats": stats}, x)
  mul = params["scale"] / np.sqrt(stats["var"] + 1e-5)
  want = np.asarray(x, np.float32) * mul + (params["bias"] - stats["mean"] * mul)
  assert y.dtype == jnp.bfloat16
  np.testing.assert_array_equal(
    np.asarray(y, np.float32), np.asarray(jnp.asarray(want).astype(jnp.bfloat16), np.float32)
  )


def test_bfloat16_training_loss_falls():
  model = poolnet_jax.create_model("resnet50", conv="xla", dtype="bfloat16", **TINY)
  variables = random_variables(model, seed=4)
  tx = step_lib.create_optimizer(variables["params"], 3e-3, weight_decay=0.0)
  trainer = parallel_lib.make_trainer(model, 1, "jit", devices=jax.devices()[:1])
  state = trainer.replicate(step_lib.TrainState.create(variables, tx))
  sums = trainer.init_sums(state)
  batch = trainer.put(_inputs(5, (2, 112, 112)))
  losses = []
  for _ in range(12):
    sums = trainer.call(state, sums, batch)
    state, sums = trainer.update(state, sums)
    sums, metrics = trainer.read_metrics(sums)
    losses.append(metrics["loss"])
  assert np.isfinite(losses).all() and losses[-1] < 0.7 * losses[0], losses


@pytest.mark.parametrize("name", ["resnet50", "vgg16", "resnet50_edge"])
def test_remat_keeps_names_outputs_and_gradients(name):
  plain = poolnet_jax.create_model(name, conv="xla", **TINY)
  remat = poolnet_jax.create_model(name, conv="xla", remat=True, **TINY)
  x = jnp.zeros((1, 128, 128, 3))
  shapes = [jax.eval_shape(m.init, jax.random.PRNGKey(0), x) for m in (plain, remat)]
  assert flax.traverse_util.flatten_dict(
    jax.tree_util.tree_map(lambda a: a.shape, shapes[0])
  ) == flax.traverse_util.flatten_dict(jax.tree_util.tree_map(lambda a: a.shape, shapes[1]))
  variables = random_variables(plain, seed=6)
  batch = _inputs(7, (1, 128, 144))
  images = step_lib.device_inputs(batch)[0]
  outputs = [np.asarray(jax.jit(m.apply)(variables, images)) for m in (plain, remat)]
  assert np.abs(outputs[1] - outputs[0]).max() <= REMAT_TOL * np.abs(outputs[0]).max()
  task = "edge" if plain.edge else "saliency"
  grads = [_flat(_grads(m, variables, batch, task)) for m in (plain, remat)]
  assert np.abs(grads[1] - grads[0]).max() <= REMAT_TOL * np.abs(grads[0]).max()
  jaxpr = str(
    jax.make_jaxpr(
      lambda v: jax.grad(
        lambda p: step_lib.task_loss(
          remat, p, v.get("batch_stats", {}), images, jnp.zeros(images.shape[:3] + (1,)), task
        )
      )(v["params"])
    )(variables)
  )
  assert "remat" in jaxpr or "checkpoint" in jaxpr


def test_unknown_dtype_is_refused():
  with pytest.raises(ValueError, match="float8"):
    poolnet_jax.create_model("resnet50", dtype="float8")
