"""poolnet_jax.runtime.compilation: programs counted by name, pmap's named by their caller."""

import threading

import jax
import jax.numpy as jnp

from poolnet_jax.runtime import compilation


def _new_programs(before):
  return {k: v for k, v in compilation.snapshot().minus(before).programs.items() if v}


def test_pmap_programs_are_counted_under_the_name_given_on_their_thread():
  x = jnp.ones((1, 7))
  jax.block_until_ready(x)
  before = compilation.snapshot()
  with compilation.naming("doubled"):
    jax.pmap(lambda v: v * 2)(x)
    seen_elsewhere = []
    other = threading.Thread(target=lambda: seen_elsewhere.append(jax.pmap(lambda v: v + 3)(x)))
    other.start()
    other.join()
    jax.jit(lambda v: v - 1)(x)  # a jitted function keeps its own name
  jax.pmap(lambda v: v * 5)(x)  # outside the block: the name jax gives it
  programs = _new_programs(before)
  assert programs.pop("pmap(doubled)") == 1
  assert programs.pop(compilation.UNNAMED) == 2  # the other thread's and the last one
  assert programs == {"jit(<lambda>)": 1}


def test_counts_and_summary_agree_with_what_was_compiled():
  doubled = jax.jit(lambda v: v * 2)
  inputs = [jnp.ones((n,)) for n in (3, 4, 3)]
  jax.block_until_ready(inputs)
  before = compilation.snapshot()
  for x in inputs:  # two shapes: two programs; the third call compiles nothing
    doubled(x)
  assert _new_programs(before) == {"jit(<lambda>)": 2}
  assert compilation.summary(since=before).startswith("2 programs compiled in ")
