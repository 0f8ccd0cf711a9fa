"""The markdown tables of `python -m bench.aot`."""

from bench import aot_search


def _gib(value):
  return "-" if value is None else f"{value / 2**30:.2f}"


def _mib(value):
  return "-" if value is None else f"{value / 2**20:,.0f}"


def _types(types):
  """'f32 conv 2, f32 matmul 4' of the float32 ops; '0' when there are none."""
  parts = [
    f"f32 {'conv' if kind == 'convolution' else kind} {by_type['f32']}"
    for kind, by_type in (types or {}).items()
    if by_type.get("f32")
  ]
  return ", ".join(parts) or "0"


def _collectives(counts):
  return ", ".join(f"{kind} {n}" for kind, n in (counts or {}).items()) or "none"


def rows_table(rows):
  lines = [
    "| target | chips | setting | program | compile s | args / out / temp MiB | total GiB "
    "/ usable | fits | collectives | f32 ops lowered / compiled | GFLOP/image | "
    "roofline images/s (estimate) |",
    "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
  ]
  for row in rows:
    options = " (triton gemm off)" if row.get("compiler_options") else ""
    head = f"| {row['target']} | {row['chips']} | {row['setting']} | {row['program']}{options} |"
    if "refused_bytes" in row:  # libtpu could not place it
      needed = f"{_gib(row['refused_bytes'])} GiB needed " if row["refused_bytes"] else ""
      lines.append(f"{head} - | - | {needed}(refused by the compiler) | no | | | | |")
      continue
    if "error" in row:
      lines.append(f"{head} error: {row['error'][:120]} | | | | | | | |")
      continue
    memory = row["memory"]
    per_image = row.get("flops_per_image")
    roofline = row.get("roofline_images_per_s")
    bf16 = row.get("dtype") == "bfloat16"
    lines.append(
      f"{head} {row['compile_s']:.0f} | {_mib(memory['argument'])} / {_mib(memory['output'])}"
      f" / {_mib(memory['temp'])} | {_gib(memory['total'])} / {_gib(row['usable_bytes'])} | "
      f"{'yes' if row['fits'] else 'no'} | {_collectives(row['collectives'])} | "
      f"{_types(row['lowered_types'])} / {_types(row['compiled_types'])} | "
      f"{'-' if per_image is None else f'{per_image / 1e9:.1f}'} | "
      f"{f'{roofline:,.0f}' if roofline and bf16 else '-'} |"
    )
  return "\n".join(lines)


def search_table(search):
  lines = [
    "| target, size, dtype, remat | largest per-chip batch that fits | smallest that does not "
    "| GiB at largest / usable | compiles |",
    "| --- | --- | --- | --- | --- |",
  ]
  for key, found in search.items():
    if "error" in found:
      lines.append(f"| {key} | error: {found['error'][:120]} | | | |")
      continue
    largest = found["largest"]
    at = found["bytes"].get(str(largest)) if largest else None
    failing = found["smallest_failing"]
    if failing and not aot_search.narrowed(largest, failing):
      largest = f"{largest} (compiles ran out before the bracket closed)"
    if failing in found.get("refused_by_compiler", ()):
      failing = f"{failing} (refused by the compiler)"
    lines.append(
      f"| {key} | {largest} | {failing or '-'} | "
      f"{_gib(at)} / {_gib(found['usable_bytes'])} | {found['compiles']} |"
    )
  return "\n".join(lines)


def text(rows, search, path):
  parts = [
    "Compiled for compile-only devices, not run: memory is XLA's per-chip analysis; GPU "
    "rows are without autotuning; roofline images/s is the chip's bf16 peak over XLA's "
    f"FLOPs (TPU), an upper bound, not a measurement. Results: {path}",
    rows_table(rows),
  ]
  if search:
    parts.append(search_table(search))
  return "\n\n".join(parts)
