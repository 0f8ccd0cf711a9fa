"""Compiling an epoch's step shapes ahead (train/warmup.py), read back from the compile counts.

poolnet_jax.runtime.compilation counts every backend compilation (persistent-cache hits
included), so "nothing compiled" is a count that does not move.
"""

import json
import logging
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from poolnet_jax.models import create_model
from poolnet_jax.runtime import compilation
from poolnet_jax.train import loop, recipe
from poolnet_jax.train import step as step_lib
from poolnet_jax.train import parallel as parallel_lib
from poolnet_jax.train import warmup

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = dict(width=0.125, stages=(1, 1, 1, 1))


def test_when_compile_ahead_is_on():
  assert warmup.enabled("auto", "native", "gpu") and warmup.enabled("auto", "buckets", "tpu")
  assert not warmup.enabled("auto", "native", "cpu")
  assert not warmup.enabled("auto", "fixed", "gpu")  # one shape: nothing to plan
  assert warmup.enabled("true", "fixed", "cpu") and warmup.enabled(True, "native", "cpu")
  assert not warmup.enabled("False", "native", "gpu") and not warmup.enabled("off", "native")
  with pytest.raises(ValueError, match="compile_ahead='yes' is not one of auto, true, false"):
    warmup.enabled("yes", "native")
  assert warmup.default_workers("cpu") == 1 and 1 <= warmup.default_workers("gpu") <= 4


class _Compiler:
  def __init__(self):
    self.calls = []

  def compile(self, state, sums, shapes):
    self.calls.append(shapes)
    return 0


class _Iterator:
  def __init__(self, joint=False):
    self.joint, self.asked = joint, []

  def step_shapes(self, start, stop):
    self.asked.append((start, stop))
    shapes = [(1, start, stop)]
    return {"edge": shapes, "saliency": shapes} if self.joint else shapes


def test_windows_run_from_each_epoch_start_to_its_end():
  compiler, iterator = _Compiler(), _Iterator()
  ahead = warmup.EpochWarmup(compiler, iterator, iter_size=3, updates_per_epoch=4, num_updates=10)
  for update in range(10):  # a run resumed at update 2 whose data state is at call 6
    if update >= 2:
      ahead.before_update(update, None, None, {"step": 3 * update})
  # Updates 2-3 (calls 6-11), 4-7 (calls 12-23), 8-9 (calls 24-29: the run ends at 10).
  assert iterator.asked == [(6, 12), (12, 24), (24, 30)]
  assert compiler.calls == [
    {"saliency": [(1, 6, 12)]},
    {"saliency": [(1, 12, 24)]},
    {"saliency": [(1, 24, 30)]},
  ]
  joint, joint_compiler = _Iterator(joint=True), _Compiler()
  ahead = warmup.EpochWarmup(joint_compiler, joint, 1, 5, 5)
  ahead.before_update(0, None, None, {"saliency": {"step": 7}, "edge": {"step": 7}})
  assert joint.asked == [(7, 12)] and set(joint_compiler.calls[0]) == {"edge", "saliency"}


def _tiny_trainer(parallel="pmap", edge=False):
  model = create_model("resnet50_edge" if edge else "resnet50", **TINY)
  variables = jax.jit(model.init)(jax.random.PRNGKey(0), jnp.zeros((1, 128, 128, 3)))
  tx = step_lib.create_optimizer(variables["params"], lambda _: 1e-4, 5e-4)
  trainer = parallel_lib.make_trainer(model, 2, parallel)
  state = trainer.replicate(step_lib.TrainState.create(variables, tx))
  return trainer, state, trainer.init_sums(state)


@pytest.mark.slow
def test_calls_of_compiled_shapes_compile_nothing():
  trainer, state, sums = _tiny_trainer()
  shapes = [(1, 112, 112), (1, 112, 120)]
  compiler = warmup.AheadCompiler(trainer, workers=2, progress=False)
  before = compilation.snapshot()
  assert compiler.compile(state, sums, {"saliency": shapes}) == 2
  after_warmup = compilation.snapshot()
  done = after_warmup.minus(before).programs
  assert {k: v for k, v in done.items() if v} == {
    "pmap(accumulate_saliency)": 2,  # two gradient programs and one update
    "pmap(update)": 1,
  }
  assert compiler.compile(state, sums, {"saliency": shapes[::-1]}) == 0
  for shape in shapes + shapes[::-1]:
    sums = trainer.call(state, sums, trainer.put(warmup.zeros_batch(shape)))
    sums = trainer.call(state, sums, trainer.put(warmup.zeros_batch(shape)))
    state, sums = trainer.update(state, sums)
  jax.block_until_ready(state.params)
  assert compilation.snapshot().minus(after_warmup).compilations == 0


def _source(sizes, seed=0):
  rng = np.random.default_rng(seed)
  return [
    {
      "image": rng.integers(0, 256, (h, w, 3), np.uint8),
      "mask": (rng.random((h, w, 1)) > 0.5).astype(np.uint8) * 255,
      "name": f"train{k}",
    }
    for k, (h, w) in enumerate(sizes)
  ]


@pytest.mark.slow
def test_a_native_run_compiles_nothing_after_the_warmup(tmp_path, monkeypatch, caplog):
  sys.path.insert(0, ROOT)
  from poolnet_jax.configs import tiny  # pylint: disable=import-outside-toplevel

  config = tiny.get_config()
  config.data_dir = str(tmp_path / "tfds")
  config.data.mode, config.batch_size, config.iter_size = "native", 1, 1
  config.parallel = "jit"  # the ahead-of-time path of jit (test_calls_of_compiled_... covers pmap)
  config.compile_ahead = "true"
  config.num_train_steps, config.log_every_steps = 8, 2  # two epochs of 6 examples
  config.eval_every_steps = config.checkpoint_every_steps = 8
  config.eval_max_images = 2
  sizes = [(112, 112), (112, 128), (128, 112)] * 2  # three step shapes per epoch
  original = recipe.data_source

  def data_source(config_, name, split):
    return _source(sizes) if split == config.train_split else original(config_, name, split)

  monkeypatch.setattr(recipe, "data_source", data_source)
  after = []
  before_update = warmup.EpochWarmup.before_update

  def recorded(self, update, *args):
    before_update(self, update, *args)
    after.append((update, compilation.snapshot(), sorted(self.compiler.compiled)))

  monkeypatch.setattr(warmup.EpochWarmup, "before_update", recorded)
  start = compilation.snapshot()
  caplog.set_level(logging.INFO)
  loop.train_and_evaluate(config, str(tmp_path / "run"))
  end = compilation.snapshot()

  def train_programs(snapshot):
    return {
      name: count
      for name, count in snapshot.minus(start).programs.items()
      if count and ("accumulate_" in name or "update" in name)
    }

  assert [u for u, _, _ in after] == list(range(8))  # asked before every update
  assert all(
    c == [("saliency", (1, 112, 112)), ("saliency", (1, 112, 128)), ("saliency", (1, 128, 112))]
    for _, _, c in after
  )
  assert train_programs(after[0][1]) == {"jit(accumulate_saliency)": 3, "jit(update)": 1}
  assert train_programs(end) == train_programs(after[0][1])  # nothing more in 8 updates
  rows = [json.loads(line) for line in open(tmp_path / "run/metrics.jsonl", encoding="utf-8")]
  counts = [
    (r["train/compilations"], r["train/compile_seconds"]) for r in rows if "train/compilations" in r
  ]
  assert len(counts) == 4 and counts[0][0] >= 4 and counts[0][1] > 0
  assert all(a[0] <= b[0] and a[1] <= b[1] for a, b in zip(counts, counts[1:]))
  assert counts[-1][0] <= end.minus(start).compilations
  assert "programs compiled in" in caplog.text and "from the persistent cache" in caplog.text
  assert "compiled ahead 3 step shapes for updates 1-6" in caplog.text


@pytest.mark.slow
def test_shapes_compiled_on_pool_threads_keep_the_matmul_precision():
  """jax.default_matmul_precision is thread-local and part of every program's cache key: a
  pool thread that compiled without the caller's precision left the call to compile again."""
  trainer, state, sums = _tiny_trainer()
  shapes = [(1, 112, 112), (1, 112, 120), (1, 120, 112)]
  with jax.default_matmul_precision("highest"):
    compiler = warmup.AheadCompiler(trainer, workers=2, progress=False)
    assert compiler.compile(state, sums, {"saliency": shapes}) == 3
    after_warmup = compilation.snapshot()
    for shape in shapes:
      sums = trainer.call(state, sums, trainer.put(warmup.zeros_batch(shape)))
    jax.block_until_ready(sums)
  again = compilation.snapshot().minus(after_warmup).programs
  assert {name: count for name, count in again.items() if count} == {}
