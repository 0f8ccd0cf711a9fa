"""Batches put on the devices ahead of the step that takes them."""

import collections


class DevicePrefetch:
  """Iterates `put(batch)` of `iterator`'s batches, `size` of them in flight.

  JAX transfers asynchronously, so the next batches cross to the devices while
  the current step runs. `get_state()` is the data state after the batches
  taken so far (not those in flight): what a checkpoint must hold.
  """

  def __init__(self, iterator, put, size=2):
    self.iterator, self.put, self.size = iterator, put, max(int(size), 1)
    self._queue = collections.deque()
    self._state = iterator.get_state()

  def __iter__(self):
    return self

  def __next__(self):
    while len(self._queue) < self.size:
      batch = self.put(next(self.iterator))
      self._queue.append((batch, self.iterator.get_state()))
    batch, self._state = self._queue.popleft()
    return batch

  def get_state(self):
    return self._state

  def set_state(self, state):
    self._queue.clear()
    self.iterator.set_state(state)
    self._state = self.iterator.get_state()
