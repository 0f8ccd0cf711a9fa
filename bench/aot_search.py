"""The largest per-chip batch whose train step fits a chip, found by compiling.

A train step needs, while its gradient program runs, that program's arguments (state,
gradient sums, batch), outputs and temporaries; the update program needs less and does
not grow with the batch. Memory grows about linearly with the batch, so two compiles
(batch 1 and 8) give a line, its crossing of the chip's usable memory a first guess,
and compiles around the guess the largest batch that fits and the smallest that does
not (within `max_compiles` compiles in all; a gap left between them is reported as
such, never as the answer).

XLA:GPU compiles a program that does not fit and reports its bytes: the usable memory
decides. libtpu refuses one (RESOURCE_EXHAUSTED, "Ran out of memory in memory space hbm
... (18.13G) exceeds available HBM (15.75G)") by its own accounting, which admits
programs whose arguments + outputs + temporaries are above the chip's HBM (a v5e
compiled a 16.9 GiB remat step): on a TPU the compiler's verdict decides. A refused
batch is listed in "refused_by_compiler"; its bytes are the message's figure (what the
compiler had counted when it stopped), raised to just over the usable memory where the
figure is below it. Such a raised figure says nothing of the slope (libtpu also refuses
programs whose summed buffers are below the HBM: a v5e refused a 300x400 bfloat16 remat
batch of 70 that the line put at 15.9 of its 16 GiB), so after that refusal the next
compile is the bracket's middle, not the line's crossing (which would step down one
batch a compile).
"""

import re

from bench import aot_hlo
from bench import aot_targets


def _gradient_total(programs_lib, target, setting, devices):
  program, args = programs_lib.programs(setting, devices, (programs_lib.TRAIN,))[
    "accumulate_saliency"
  ]
  compiled, _ = aot_targets.compile_lowered(program.lower(*args), target)
  return aot_hlo.memory(compiled)["total"]


_UNITS = {"K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


def refused_bytes(error):
  """The bytes an out-of-memory compile error says were required, 0 where it gives no
  figure, None when `error` is not one."""
  message = str(error)
  if "RESOURCE_EXHAUSTED" not in message or "memory" not in message.lower():
    return None
  figure = re.search(r"\((\d+(?:\.\d+)?)\s*([KMGT])i?B?\)", message)
  return int(float(figure.group(1)) * _UNITS[figure.group(2)]) if figure else 0


def largest_batch(programs_lib, target, devices, config, size, dtype, remat, max_compiles):
  """{"largest": fitting batch (0: none), "smallest_failing": batch or None, "bytes":
  {batch: total bytes}, "usable_bytes", "compiles", "refused_by_compiler": [batch]}."""
  base = programs_lib.default_setting(config, dtype=dtype, remat=remat)
  limit = target.usable_bytes
  measured, refused, raised = {}, [], set()

  def total(batch):
    if batch not in measured:
      setting = type(base)(config, batch, tuple(size), dtype, remat, base.parallel)
      try:
        measured[batch] = _gradient_total(programs_lib, target, setting, devices)
      except Exception as error:  # pylint: disable=broad-except
        required = refused_bytes(error)
        if required is None:
          raise
        refused.append(batch)
        if required <= limit:
          raised.add(batch)
        measured[batch] = max(required, limit + 1)
    return measured[batch]

  def fits(batch):
    needed = total(batch)
    return batch not in refused and target.admits(needed)

  def result(largest, failing):
    return {
      "largest": largest,
      "smallest_failing": failing,
      "bytes": {str(b): v for b, v in sorted(measured.items())},
      "usable_bytes": limit,
      "compiles": len(measured),
      "refused_by_compiler": sorted(refused),
    }

  try:
    if not fits(1):
      return result(0, 1)
    largest, failing = (8, None) if fits(8) else (1, 8)
    while len(measured) < max_compiles:
      if narrowed(largest, failing):
        break
      if failing in raised:
        guess = (largest + failing) // 2
      else:
        guess = _crossing(measured, largest, failing, limit)
      if guess in measured:
        break
      if fits(guess):
        largest = guess
      else:
        failing = guess
    return result(largest, failing)
  except Exception as error:  # pylint: disable=broad-except
    found = result(None, None)
    found["error"] = f"{type(error).__name__}: {error}"[:1000]
    return found


def narrowed(largest, failing):
  """Whether the bracket is as tight as the search makes it: 2 % of the batch, at least
  1 (False while no batch failed)."""
  return failing is not None and failing - largest <= max(1, largest // 50)


def _crossing(measured, fits, fails, limit):
  """The next batch to compile: where the line through the two batches that bracket the
  limit (or the two largest, when none fails yet) crosses it, strictly between them; the
  middle of the bracket where the line points outside it (a TPU's own accounting)."""
  a, b = (fits, fails) if fails is not None else sorted(measured)[-2:]
  slope = (measured[b] - measured[a]) / (b - a)
  guess = int(a + (limit - measured[a]) // slope) if slope > 0 else 2 * fits
  if fails is None:
    past_limit = measured[fits] > limit  # what fits is above the limit: steps of 10 %
    return max(guess, fits + (max(1, fits // 10) if past_limit else 1))
  return guess if fits < guess < fails else (fits + fails) // 2
