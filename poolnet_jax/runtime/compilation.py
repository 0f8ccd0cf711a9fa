"""Every XLA program this process compiles, counted with its seconds (jax.monitoring).

    before = compilation.snapshot()
    ...
    print(compilation.summary(since=before))  # "3 programs compiled in 41.2 s, 1 from the
                                               #  persistent cache"

JAX reports each backend compilation (a persistent-cache hit included) and each
cache hit as monitoring events; `watch()` registers one listener for them, once
per process (it only counts). The counts are by program name: the jitted
function's name (train/parallel.py names its programs). jax.pmap calls all its
programs `jit(_fun)`; one compiled inside `naming(name)` is counted as
`pmap(name)` instead.
"""

import collections
import contextlib
import dataclasses
import threading

import jax

COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"
CACHE_HIT_EVENT = "/jax/compilation_cache/cache_hits"

_lock = threading.Lock()
_programs = collections.Counter()
_seconds = collections.Counter()
_cache_hits = [0]
_watching = [False]
_naming = threading.local()  # compile events run on the thread that compiles
UNNAMED = "jit(_fun)"  # what jax.pmap's programs are called


@dataclasses.dataclass(frozen=True)
class Snapshot:
  """Cumulative counts at one moment."""

  programs: dict
  seconds: dict
  cache_hits: int

  @property
  def compilations(self):
    return sum(self.programs.values())

  @property
  def compile_seconds(self):
    return sum(self.seconds.values())

  def minus(self, earlier):
    """What happened since `earlier`."""
    keys = set(self.programs) | set(earlier.programs)
    return Snapshot(
      {k: self.programs.get(k, 0) - earlier.programs.get(k, 0) for k in keys},
      {k: self.seconds.get(k, 0.0) - earlier.seconds.get(k, 0.0) for k in keys},
      self.cache_hits - earlier.cache_hits,
    )


def _on_duration(event, seconds, **kwargs):
  if event == COMPILE_EVENT:
    name = kwargs.get("fun_name", "?")
    if name == UNNAMED and getattr(_naming, "name", None):
      name = f"pmap({_naming.name})"
    with _lock:
      _programs[name] += 1
      _seconds[name] += seconds


def _on_event(event, **kwargs):
  del kwargs
  if event == CACHE_HIT_EVENT:
    with _lock:
      _cache_hits[0] += 1


@contextlib.contextmanager
def naming(name):
  """Counts a pmap program compiled on this thread inside the block as `pmap(name)`."""
  outer = getattr(_naming, "name", None)
  _naming.name = name
  try:
    yield
  finally:
    _naming.name = outer


def watch():
  """Starts counting (idempotent)."""
  with _lock:
    if _watching[0]:
      return
    _watching[0] = True
  jax.monitoring.register_event_duration_secs_listener(_on_duration)
  jax.monitoring.register_event_listener(_on_event)


def snapshot():
  watch()
  with _lock:
    return Snapshot(dict(_programs), dict(_seconds), _cache_hits[0])


def summary(since=None):
  """One line: programs compiled, seconds, how many came from the persistent cache."""
  now = snapshot()
  done = now.minus(since) if since is not None else now
  return (
    f"{done.compilations} program{'s' if done.compilations != 1 else ''} compiled in "
    f"{done.compile_seconds:.1f} s, {done.cache_hits} from the persistent cache"
  )
