"""`python -m bench.aot [--tiny]`: the real programs compiled for TPUs and NVIDIA GPUs, here.

No accelerator is needed: libtpu and the CUDA plugin compile for compile-only devices
(bench/aot_targets.py; `pip install --no-deps --target .aot-backends -r
requirements-aot.txt`). For each target
(TPU v5e, v5p, v6e; H100, H200), topology (1, 4, 8 chips) and shipped config, the
programs of bench/aot_programs.py are lowered on abstract arrays and compiled, and each
row reports: compile seconds; arguments, outputs, temporaries and their total per chip
against the chip's usable memory (fits or not); collectives by kind; the element types
of convolutions and matrix products as lowered (what the project asks for) and as
compiled (XLA's choices); and, on TPU, XLA's FLOPs per image with the roofline bound at
the chip's bf16 peak (an estimate, not a measurement).

On 1 chip every config compiles all its programs in its own dtype and bfloat16 (and
resnet50_batched's train programs with remat flipped: the memory it saves); on 4 and 8
chips its train programs in bfloat16 (the collectives), resnet50_batched's in each
parallel mode (pmap, shard_map, jit) on the smaller. Then, for resnet50_batched on one
chip of each target at 320x320 and 300x400, float32 and bfloat16, with and without
remat, the largest per-chip batch whose train step fits: a line through two compiles,
then compiles around its prediction (`--no-search` skips it).

GPU figures are the compiler's without autotuning (no device to time cuDNN's
algorithms on) and without cost analysis. Results go to a JSON file as they come, and a
rerun continues from it (`--fresh` starts over). The project's own record is in
bench/results/ (aot_gpu.json, aot_tpu.json: docs/aot.md's tables are printed from them,
and tests/test_aot.py holds the two together); `--json bench/results/aot_tpu.json`
continues it. The last line is
`aot targets=N compiled=C fits=F`: N programs planned, C compiled, F fitting in memory.
`--tiny` compiles a tiny model's programs on 4 chips of one TPU (pmap's train programs)
and one GPU target (pmap's inference and export, the other modes' train programs);
`--report` prints the tables of every result in the JSON file.
"""

import argparse
import json
import os
import sys
import time
import traceback

from bench import aot_targets

SEARCH_CONFIG = "resnet50_batched"
SEARCH_SIZES = ((320, 320), (300, 400))
MAX_SEARCH_COMPILES = 10
MODES = ("pmap", "shard_map", "jit")  # train/parallel.py's, pmap (the default) first
MODES_CONFIG = "resnet50_batched"  # compiled in each mode beside the others' pmap


def parse_args(argv):
  parser = argparse.ArgumentParser(
    prog="python -m bench.aot",
    description=__doc__,
    formatter_class=argparse.RawDescriptionHelpFormatter,
  )
  parser.add_argument("--tiny", action="store_true", help="tiny model, one TPU and one GPU")
  parser.add_argument("--targets", default="", help=f"of {','.join(aot_targets.TARGETS)}")
  parser.add_argument(
    "--configs", default="", help="poolnet_jax/configs/ names (default: every shipped)"
  )
  parser.add_argument("--chips", default="1,4,8", help="topology sizes (default 1,4,8)")
  parser.add_argument("--no-search", action="store_true", help="skip the largest-batch search")
  parser.add_argument("--json", default="runs/aot/aot.json", help="results, kept as they come")
  parser.add_argument("--fresh", action="store_true", help="ignore earlier results in --json")
  parser.add_argument(
    "--report",
    action="store_true",
    help="print the tables of every result in --json, compile nothing",
  )
  parser.add_argument(
    "--backends",
    default=aot_targets.BACKENDS,
    help="folder of the compile-only backends (pip install --target; default .aot-backends "
    "of the repository, when it exists; else those installed in the environment)",
  )
  return parser.parse_args(argv)


def plan(args, programs_lib):
  """[(target, chips, Setting, kinds)] in the order they compile: one chip first (every
  program), then the parallel modes side by side, then the larger topologies."""
  every = (programs_lib.TRAIN, programs_lib.INFERENCE, programs_lib.EXPORT)
  train = (programs_lib.TRAIN,)
  if args.tiny:
    targets = _names(args.targets) or aot_targets.TINY_TARGETS
    items = []
    for target in targets:
      # libtpu takes ~70 s a tiny gradient program here, XLA:GPU ~17: the TPU compiles
      # pmap's train programs, the GPU pmap's inference and export and the other modes'.
      on_tpu = aot_targets.TARGETS[target].platform == "tpu"
      kinds = train if on_tpu else (programs_lib.INFERENCE, programs_lib.EXPORT)
      items.append((target, 4, programs_lib.default_setting("tiny", dtype="bfloat16"), kinds))
      if on_tpu:
        continue
      for mode in MODES[1:]:
        setting = programs_lib.default_setting("tiny", dtype="bfloat16", parallel=mode)
        items.append((target, 4, setting, train))
    return items
  targets = _names(args.targets) or tuple(aot_targets.TARGETS)
  configs = _names(args.configs) or programs_lib.CONFIGS
  chips = [int(c) for c in _names(args.chips)]
  items = []
  if 1 in chips:
    for target in targets:
      for name in configs:
        own = programs_lib.default_setting(name)
        for dtype in dict.fromkeys([own.dtype, "bfloat16"]):
          items.append((target, 1, programs_lib.default_setting(name, dtype=dtype), every))
        if name == MODES_CONFIG:  # the memory remat saves
          remat = programs_lib.default_setting(name, "bfloat16", remat=not own.remat)
          items.append((target, 1, remat, train))
  for count in (c for c in chips if c > 1):
    for target in targets:
      if count == min(c for c in chips if c > 1) and MODES_CONFIG in configs:
        for mode in MODES[1:]:
          setting = programs_lib.default_setting(MODES_CONFIG, "bfloat16", parallel=mode)
          items.append((target, count, setting, train))
      for name in configs:
        items.append((target, count, programs_lib.default_setting(name, "bfloat16"), train))
  return items


def _names(text):
  return tuple(n.strip() for n in text.split(",") if n.strip())


class Results:
  """The JSON file: every compiled row by key, written after each."""

  def __init__(self, path, fresh):
    self.path = path
    self.data = {"rows": {}, "search": {}}
    if not fresh and os.path.exists(path):
      with open(path, encoding="utf-8") as f:
        self.data = json.load(f)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)

  def save(self):
    with open(self.path + ".tmp", "w", encoding="utf-8") as f:
      json.dump(self.data, f, indent=1)
    os.replace(self.path + ".tmp", self.path)


def compile_row(target, chips, setting, name, program, args):
  """One program compiled: its row (or the error that stopped it)."""
  from bench import aot_hlo, aot_search  # pylint: disable=import-outside-toplevel

  row = {"target": target.name, "chips": chips, "setting": setting.label, "program": name}
  row.update(config=setting.config, batch=setting.per_chip_batch, dtype=setting.dtype)
  begin = time.perf_counter()
  try:
    lowered = program.lower(*args)
    compiled, options = aot_targets.compile_lowered(lowered, target)
    if options:
      row["compiler_options"] = options
    row["compile_s"] = time.perf_counter() - begin
    _check_platform(compiled, target)
    row.update(aot_hlo.analyse(lowered, compiled))
  except Exception as error:  # pylint: disable=broad-except
    traceback.print_exc()
    row["error"] = f"{type(error).__name__}: {error}"[:1000]
    required = aot_search.refused_bytes(error) if target.platform == "tpu" else None
    if required is not None:  # libtpu could not place it: compiled no, fits no
      row.update(fits=False, refused_bytes=required)
    return row
  total = row["memory"]["total"]
  row["usable_bytes"] = target.usable_bytes
  row["fits"] = target.admits(total)
  if row["flops"] and name != "update":
    per_image = row["flops"] / setting.per_chip_batch
    row["flops_per_image"] = per_image
    row["roofline_images_per_s"] = target.bf16_flops / per_image  # estimate, bf16 peak
  return row


def _check_platform(compiled, target):
  """Raises unless every argument of `compiled` lives on `target`'s devices: a program
  given no devices of its own compiles for the host CPU, and its figures would be the
  CPU's."""
  import jax  # pylint: disable=import-outside-toplevel

  shardings = jax.tree_util.tree_leaves(compiled.input_shardings)
  found = {d.platform for s in shardings for d in s.device_set}
  if found != {target.device_platform}:
    raise RuntimeError(f"compiled for {sorted(found)}, not {target.device_platform}")


PROGRAMS = ("accumulate_saliency", "accumulate_edge", "update", "inference", "export")


def _keys(target_name, chips, setting):
  return {name: f"{target_name}/{chips}/{setting.label}/{name}" for name in PROGRAMS}


def planned_keys(items):
  """The result key of every program the plan compiles, in order."""
  return [
    key
    for target_name, chips, setting, kinds in items
    for key in _keys(target_name, chips, setting).values()
    if _wanted(key, kinds, setting)
  ]


def run_items(items, results, device_cache, programs_lib):
  for target_name, chips, setting, kinds in items:
    target = aot_targets.TARGETS[target_name]
    keys = _keys(target_name, chips, setting)
    done = {k for k, row in results.data["rows"].items() if "error" not in row}
    if all(k in done for k in keys.values() if _wanted(k, kinds, setting)):
      continue
    try:
      built = programs_lib.programs(setting, _devices(device_cache, target, chips), kinds)
    except Exception as error:  # pylint: disable=broad-except
      traceback.print_exc()
      for key in keys.values():
        if _wanted(key, kinds, setting) and key not in done:
          name = key.rsplit("/", 1)[1]
          results.data["rows"][key] = {
            "target": target_name,
            "chips": chips,
            "setting": setting.label,
            "program": name,
            "error": f"{type(error).__name__}: {error}"[:1000],
          }
      results.save()
      continue
    for name, (program, args) in built.items():
      key = keys[name]
      if key in done:
        continue
      row = compile_row(target, chips, setting, name, program, args)
      results.data["rows"][key] = row
      results.save()
      print(_progress(row), file=sys.stderr, flush=True)


def _wanted(key, kinds, setting):
  name = key.rsplit("/", 1)[1]
  if name == "accumulate_edge":
    return "edge" in setting.config and "train" in kinds
  if name in ("accumulate_saliency", "update"):
    return "train" in kinds
  return name in kinds


def _devices(cache, target, chips):
  if (target.name, chips) not in cache:
    cache[(target.name, chips)] = aot_targets.devices(target, chips)
  return cache[(target.name, chips)]


def _progress(row):
  if "error" in row:
    return f"{row['target']} x{row['chips']} {row['setting']} {row['program']}: {row['error']}"
  return (
    f"{row['target']} x{row['chips']} {row['setting']} {row['program']}: "
    f"{row['compile_s']:.0f} s, {row['memory']['total'] / 2**30:.2f} GiB"
    f" ({'fits' if row['fits'] else 'does not fit'}), collectives {row['collectives'] or 0}"
  )


def search(results, device_cache, programs_lib, targets):
  """The largest per-chip batch of SEARCH_CONFIG's train step that fits each target."""
  from bench import aot_search  # pylint: disable=import-outside-toplevel

  for target_name in targets:
    target = aot_targets.TARGETS[target_name]
    devices = _devices(device_cache, target, 1)
    for size in SEARCH_SIZES:
      for dtype in ("float32", "bfloat16"):
        for remat in (False, True):
          key = f"{target_name}/{size[0]}x{size[1]}/{dtype}/remat={remat}"
          if key in results.data["search"] and "error" not in results.data["search"][key]:
            continue
          found = aot_search.largest_batch(
            programs_lib, target, devices, SEARCH_CONFIG, size, dtype, remat, MAX_SEARCH_COMPILES
          )
          results.data["search"][key] = found
          results.save()
          print(f"largest batch {key}: {found.get('largest')}", file=sys.stderr, flush=True)


def main(argv=None):
  args = parse_args(sys.argv[1:] if argv is None else argv)
  aot_targets.use_backends(args.backends)
  aot_targets.prepare_environment()
  # JAX and the project are imported after the environment is set: JAX reads it at start.
  from bench import aot_programs, aot_report  # pylint: disable=import-outside-toplevel

  if args.report:
    results = Results(args.json, fresh=False)
    print(aot_report.text(list(results.data["rows"].values()), results.data["search"], args.json))
    return 0
  items = plan(args, aot_programs)
  platforms = {aot_targets.TARGETS[t].platform for t, _, _, _ in items}
  missing = {p: aot_targets.missing_backend(p) for p in sorted(platforms)}
  missing = {p: why for p, why in missing.items() if why}
  if missing:
    for platform, why in missing.items():
      print(f"bench.aot: no {platform} compiler: {why}", file=sys.stderr)
    return 2
  results = Results(args.json, args.fresh)
  device_cache = {}
  begin = time.time()
  run_items(items, results, device_cache, aot_programs)
  if not args.tiny and not args.no_search:
    search(results, device_cache, aot_programs, dict.fromkeys(t for t, _, _, _ in items))
  results.data["wall_s"] = results.data.get("wall_s", 0.0) + time.time() - begin
  results.save()
  keys = planned_keys(items)
  rows = [results.data["rows"][key] for key in keys if key in results.data["rows"]]
  print(aot_report.text(rows, results.data["search"], args.json))
  compiled = [r for r in rows if "error" not in r]
  fits = [r for r in compiled if r["fits"]]
  print(f"aot targets={len(keys)} compiled={len(compiled)} fits={len(fits)}")
  return 0 if len(compiled) == len(keys) else 1


if __name__ == "__main__":
  sys.exit(main())
