"""The demo's from-scratch recipe: schedules, gradient clipping and the skipinit initialisation."""

import functools
import math

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from poolnet_jax.configs import common
from poolnet_jax.configs import demo
from poolnet_jax.models import create_model
from poolnet_jax.train import recipe
from poolnet_jax.train import step as step_lib
from poolnet_jax.weights.torch_io import backbones


def config(**changes):
  """poolnet_jax/configs/common.base() (the one source of defaults) with the demo's optimizer keys."""
  c = common.base()
  c.learning_rate, c.weight_decay, c.iter_size = 1e-3, 0.0, 1
  for key, value in changes.items():
    if key == "model":
      c.model.update(value)  # the spec's fields
    else:
      c[key] = value
  return c


def test_warmup_cosine_schedule_follows_the_formula():
  peak, warmup, total, end = 2e-3, 10, 110, 0.05
  schedule = step_lib.cosine_schedule(peak, total, warmup, end)
  for step in (0, 3, 10):  # linear warmup from 0
    np.testing.assert_allclose(schedule(step), peak * step / warmup, rtol=1e-6)
  for step in (10, 35, 60, 100, 110, 150):  # cosine to end * peak, then flat
    t = min(step - warmup, total - warmup) / (total - warmup)
    want = peak * (end + (1 - end) * 0.5 * (1 + math.cos(math.pi * t)))
    np.testing.assert_allclose(schedule(step), want, rtol=1e-5)


def test_step_schedule_warmup_keeps_absolute_decay_steps():
  schedule = step_lib.learning_rate_schedule(1e-3, (50,), warmup_steps=20)
  np.testing.assert_allclose(
    [schedule(s) for s in (0, 5, 20, 49, 50, 90)], [0, 2.5e-4, 1e-3, 1e-3, 1e-4, 1e-4], rtol=1e-6
  )


def test_default_config_keeps_the_paper_step_schedule_and_resets():
  c = config()
  schedule = recipe.learning_rate(c, 100, (60,))
  np.testing.assert_allclose(
    [schedule(0), schedule(59), schedule(60)], [1e-3, 1e-3, 1e-4], rtol=1e-6
  )
  params = {"w": jnp.ones(3)}
  tx, _ = recipe.optimizer(c, params, 100, (60,))
  reference = step_lib.create_optimizer(params, schedule, 0.0, reset_moments_at=(60,))
  assert jax.tree_util.tree_structure(tx.init(params)) == jax.tree_util.tree_structure(
    reference.init(params)
  )
  with pytest.raises(ValueError, match="lr_schedule"):
    recipe.learning_rate(config(lr_schedule="linear"), 100, ())


def test_demo_keeps_its_ten_minute_budget_and_validates_its_last_update():
  c = demo.get_config()
  # 3,750 updates of 8 images at 112x112: the first command's budget (BENCHMARKS.md, the
  # first command: 5,000 updates took 12 minutes on 2 Zen 2 cores, 3,750 took 9:12 on a Xeon).
  assert c.num_train_steps * c.batch_size * c.iter_size * math.prod(c.data.size) <= (
    3750 * 8 * 112 * 112
  )
  assert c.num_train_steps % c.eval_every_steps == 0  # the final model is validated
  assert c.num_train_steps % c.checkpoint_every_steps == 0  # and kept
  schedule = recipe.learning_rate(c, c.num_train_steps, ())  # annealed by the last update
  np.testing.assert_allclose(
    schedule(c.num_train_steps), c.learning_rate * c.lr_end_factor, rtol=1e-5
  )


def adam_moments(state):
  """(mu, nu) of the single Adam in an optimizer state of 1-D parameters."""
  found = [x for x in jax.tree_util.tree_leaves(state) if np.ndim(x) == 1]
  return found[: len(found) // 2], found[len(found) // 2 :]


@pytest.mark.parametrize(
  "scale, want_a, want_b",
  [
    (1.0, [0.6, 0.0], [0.8]),  # norm 5 > 1: scaled by 1/5
    (0.1, [0.3, 0.0], [0.4]),  # norm 0.5 <= 1: untouched
  ],
)
def test_clipping_scales_the_gradient_to_the_given_norm(scale, want_a, want_b):
  params = {"a": jnp.zeros(2), "b": jnp.zeros(1)}
  grads = {"a": jnp.array([3.0, 0.0]) * scale, "b": jnp.array([4.0]) * scale}
  tx = step_lib.create_optimizer(params, 1.0, weight_decay=0.0, clip_norm=1.0)
  _, state = tx.update(grads, tx.init(params), params)
  (mu_a, mu_b), (nu_a, nu_b) = adam_moments(state)
  # Adam's first step: mu = 0.1 g, nu = 0.001 g^2 of the clipped gradient g.
  np.testing.assert_allclose(mu_a, 0.1 * np.array(want_a), rtol=1e-5)
  np.testing.assert_allclose(mu_b, 0.1 * np.array(want_b), rtol=1e-5)
  np.testing.assert_allclose(nu_b, 0.001 * np.array(want_b) ** 2, rtol=1e-5)


def test_clipping_reads_the_config_key():
  params = {"a": jnp.zeros(2)}
  tx, _ = recipe.optimizer(
    config(clip_grad_norm=0.5, reset_optimizer_at_decay=False), params, 10, ()
  )
  grads = {"a": jnp.array([30.0, 40.0])}  # norm 50, clipped to 0.5
  _, state = tx.update(grads, tx.init(params), params)
  (mu,), _ = adam_moments(state)
  np.testing.assert_allclose(mu, 0.1 * np.array([0.3, 0.4]), rtol=1e-5)


TINY = dict(width=0.125, stages=(1, 1, 1, 1))


def init_variables(init, seed=0):
  model = create_model("resnet50", init=init, **TINY)
  variables = jax.jit(model.init)(jax.random.PRNGKey(seed), jnp.zeros((1, 112, 112, 3)))
  return model, flax.core.unfreeze(variables)


@pytest.fixture(scope="module")
def skipinit_model_variables():
  return init_variables("skipinit")


def he(kernel):
  return math.sqrt(2 / np.prod(kernel.shape[:-1]))


def test_skipinit_zeroes_residual_ends_and_score_and_uses_he_std(skipinit_model_variables):
  _, variables = skipinit_model_variables
  flat = flax.traverse_util.flatten_dict(variables["params"], sep="/")
  conv3 = [k for k in flat if k.endswith("conv3/kernel")]
  assert len(conv3) == 4 and all(not np.any(flat[k]) for k in conv3)
  assert not np.any(flat["score/score/kernel"])
  first = flat["base/resnet/conv1/kernel"]  # 7x7x3 -> 8, divided by the input's scale 64
  np.testing.assert_allclose(first.std(), math.sqrt(2 / 147) / 64, rtol=0.15)
  big = flat["base/resnet/layer4/0/conv2/kernel"]  # 3x3, He gain sqrt(2)
  np.testing.assert_allclose(big.std(), he(big), rtol=0.05)
  # Convolutions summed without a ReLU: gain 1 over sqrt(terms): conv_sum is one term,
  # each pooled branch and conv_sum_c three.
  for name, terms in (
    ("deep_pool/0/conv_sum/kernel", 1),
    ("deep_pool/0/convs/1/kernel", 3),
    ("deep_pool/0/conv_sum_c/kernel", 3),
  ):
    kernel = flat[name]
    np.testing.assert_allclose(
      kernel.std(), he(kernel) / math.sqrt(2 * terms), rtol=0.05, err_msg=name
    )
  # Frozen BatchNorm and biases keep their values.
  np.testing.assert_array_equal(flat["base/resnet/bn1/scale"], 1.0)
  np.testing.assert_array_equal(flat["score/score/bias"], 0.0)


def test_original_init_draws_every_kernel_from_n_0_001():
  _, variables = init_variables(None)
  flat = flax.traverse_util.flatten_dict(variables["params"], sep="/")
  kernels = {k: v for k, v in flat.items() if k.endswith("kernel") and v.size > 2000}
  assert len(kernels) > 20
  for name, kernel in kernels.items():
    np.testing.assert_allclose(kernel.std(), 0.01, rtol=0.1, err_msg=name)
    assert abs(kernel.mean()) < 0.002, name


def test_schemes_share_one_parameter_tree_and_compute_the_same(skipinit_model_variables):
  model, variables = skipinit_model_variables
  original, original_variables = init_variables(None)
  assert jax.tree_util.tree_structure(variables) == jax.tree_util.tree_structure(original_variables)
  images = jax.random.normal(jax.random.PRNGKey(3), (1, 112, 112, 3))
  np.testing.assert_array_equal(
    jax.jit(model.apply)(variables, images), jax.jit(original.apply)(variables, images)
  )


def fam_output_stds(model, variables):
  images = 60.0 * jax.random.normal(jax.random.PRNGKey(2), (2, 112, 112, 3))
  apply = jax.jit(
    functools.partial(model.apply, capture_intermediates=True, mutable=["intermediates"])
  )
  _, state = apply(variables, images)
  flat = flax.traverse_util.flatten_dict(state["intermediates"], sep="/")
  return [float(jnp.std(flat[f"deep_pool/{i}/conv_sum/__call__"][0])) for i in range(5)]


def test_skipinit_keeps_activations_near_unit_scale_where_the_original_vanishes(
  skipinit_model_variables,
):
  assert all(0.2 < std < 10.0 for std in fam_output_stds(*skipinit_model_variables))
  assert fam_output_stds(*init_variables(None))[-1] < 0.01


def test_checkpoints_replace_what_they_hold_and_the_scheme_draws_the_rest(
  skipinit_model_variables, monkeypatch
):
  model, _ = skipinit_model_variables
  rng = jax.random.PRNGKey(0)
  scratch = recipe.initial_variables(config(init="skipinit", model=TINY), model, rng)
  assert not np.any(scratch["params"]["score"]["score"]["kernel"])
  backbone, merged = {"conv1": {"kernel": np.full((7, 7, 3, 8), 0.5, np.float32)}}, []
  monkeypatch.setattr(backbones, "load_backbone", lambda *args, **kwargs: (backbone, []))
  monkeypatch.setattr(backbones, "merge_backbone", lambda v, b: merged.append((v, b)) or v)
  loaded = recipe.initial_variables(
    config(init="skipinit", backbone_checkpoint="fake.pth", model=TINY), model, rng
  )
  assert merged[0][1] is backbone and merged[0][0] is loaded
  flat = flax.traverse_util.flatten_dict(loaded["params"], sep="/")
  assert not np.any(flat["score/score/kernel"])  # the decoder as the scheme draws it


def test_setup_builds_the_configs_scheme_and_refuses_unknown_ones():
  assert recipe.create_model_from_config(config(init="skipinit")).conv.init == "skipinit"
  assert recipe.create_model_from_config(config(init="")).conv.init == "original"
  with pytest.raises(ValueError, match="unknown initialisation 'fixup'"):
    init_variables("fixup")
