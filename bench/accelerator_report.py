"""Tables, goals and the summary line of `python -m bench.accelerator`."""

import sys

from bench import harness

SECTIONS = ("inference", "train", "resize_conv", "remat", "torch_compile")

# (what, section, shape, precision, side, target): side "a" is JAX's images/s, "ratio"
# JAX's over PyTorch's. From the issue: the paper's ~32 FPS (Titan Xp) is the floor.
GOALS = (
  (
    "JAX inference images/s, paper shape, bfloat16 (paper: ~32 FPS)",
    "inference",
    "paper",
    "bfloat16",
    "a",
    32.0,
  ),
  (
    "JAX inference images/s, paper shape, float32 default (paper: ~32 FPS)",
    "inference",
    "paper",
    "float32, JAX default precision / PyTorch TF32",
    "a",
    32.0,
  ),
  ("JAX/PyTorch bfloat16 batched inference", "inference", "batched", "bfloat16", "ratio", 1.3),
  ("JAX/PyTorch bfloat16 batched train step", "train", "batched", "bfloat16", "ratio", 1.3),
  ("JAX bfloat16 batched inference images/s", "inference", "batched", "bfloat16", "a", 1000.0),
)


def _row(results, section, shape, precision):
  return next(
    (r for r in results[section] if r["shape"] == shape and r["precision"] == precision), None
  )


def goals(results):
  """Each goal with the measured value (None: not measured) and whether it is met."""
  out = []
  for what, section, shape, precision, side, target in GOALS:
    row = _row(results, section, shape, precision)
    value = (
      None if row is None else (row["ratio"] if side == "ratio" else row["a"].get("images_per_s"))
    )
    out.append(
      {
        "goal": what,
        "shape": row and row["label"],
        "target": target,
        "value": value,
        "met": None if value is None else value >= target,
      }
    )
  return out


_num, _mb = harness.number, harness.megabytes


def _ips(side):
  return side.get("images_per_s") if "error" not in side else None


def progress(step, results, seconds):
  if step.section == "parity":
    line = ", ".join(
      f"{name} rel L2 {_num(p.get('rel_l2'), 7)}"
      for name, p in results["parity"]["against"].items()
    )
  else:
    row = results[step.section][-1]
    a, b = row["a"], row["b"]
    line = (
      f"{row['label']} {row['precision']}: {a['framework']} {_num(_ips(a))} images/s, "
      f"{b['framework']} {_num(_ips(b))} images/s, ratio {_num(row['ratio'], 2)}"
    )
  print(f"[{step.section}] {line} ({seconds:.0f} s)", file=sys.stderr, flush=True)


def comparison_table(results):
  header = (
    "what",
    "precision",
    "JAX images/s",
    "PyTorch images/s",
    "JAX/PyTorch",
    "JAX compile s",
    "PyTorch first call s",
    "JAX executable MB",
    "PyTorch peak MB",
  )
  rows = [
    [
      row["label"],
      row["precision"],
      *_pair_cells(row),
      _num(row["a"].get("compile_s")),
      _num(row["b"].get("first_call_s"), 2),
      _mb(row["a"].get("executable_bytes")),
      _mb(row["b"].get("peak_bytes")),
    ]
    for row in results["inference"] + results["train"]
  ]
  return harness.markdown(header, rows)


def _pair_cells(row):
  """Images/s of side a and side b and their ratio."""
  return _num(_ips(row["a"])), _num(_ips(row["b"])), _num(row["ratio"], 2)


def resize_conv_table(results):
  header = (
    "what (JAX, bfloat16)",
    "resize_conv on images/s",
    "off images/s",
    "on/off",
    "compile s on / off",
  )
  rows = [
    [
      row["label"],
      *_pair_cells(row),
      f"{_num(row['a'].get('compile_s'))} / {_num(row['b'].get('compile_s'))}",
    ]
    for row in results["resize_conv"]
  ]
  return harness.markdown(header, rows)


def remat_table(results):
  header = (
    "what (JAX, bfloat16)",
    "remat images/s",
    "without images/s",
    "remat/without",
    "executable MB remat / without",
  )
  rows = [
    [
      row["label"],
      *_pair_cells(row),
      f"{_mb(row['a'].get('executable_bytes'))} / {_mb(row['b'].get('executable_bytes'))}",
    ]
    for row in results.get("remat", [])
  ]
  return harness.markdown(header, rows)


def torch_compile_table(results):
  header = (
    "what (bfloat16)",
    "JAX images/s",
    "PyTorch torch.compile images/s",
    "JAX/PyTorch",
    "PyTorch first call (compiling) s",
    "PyTorch peak MB",
  )
  rows = [
    [
      row["label"],
      *_pair_cells(row),
      _num(row["b"].get("first_call_s"), 1),
      _mb(row["b"].get("peak_bytes")),
    ]
    for row in results.get("torch_compile", [])
  ]
  return harness.markdown(header, rows)


def parity_table(results):
  parity = results["parity"]
  if not parity:
    return "parity: not measured"
  shape = "x".join(map(str, parity["shape"]))
  header = (
    f"against {parity['reference']}, {shape}",
    "relative L2 of logits",
    "max abs difference of maps",
  )
  rows = [
    [name, f"error: {p['error'][:80]}", ""]
    if "error" in p
    else [name, f"{p['rel_l2']:.2e}", f"{p['max_abs_map']:.2e}"]
    for name, p in parity["against"].items()
  ]
  return harness.markdown(header, rows)


def goals_table(results):
  rows = [
    [
      g["goal"],
      g["shape"] or "-",
      f"{g['target']:g}",
      _num(g["value"], 2),
      "n/a" if g["met"] is None else ("yes" if g["met"] else "no"),
    ]
    for g in results["goals"]
  ]
  return harness.markdown(("goal", "measured on", "target", "measured", "met"), rows)


def errors(results):
  """Every failed item and parity comparison, one line each."""
  out = []
  for section in SECTIONS:
    for row in results.get(section, []):
      out += [
        f"{row['label']} {side['framework']} {side['precision']}: {side['error']}"
        for side in (row["a"], row["b"])
        if "error" in side
      ]
  against = results["parity"].get("against", {})
  return out + [f"parity, {name}: {p['error']}" for name, p in against.items() if "error" in p]


def notes(results):
  """Skipped items, errors and settings worth a line each."""
  out = list(results["skipped"]) + errors(results)
  for section in SECTIONS:
    for row in results.get(section, []):
      out += [
        f"{row['label']} {side['framework']} {side['precision']}: {side['note']}"
        for side in (row["a"], row["b"])
        if side.get("note")
      ]
  prepared = results["model"]["prepared"]["jax"]
  out.append(f"JAX convolutions (resize_conv rows aside): {prepared.get('conv', '-')}")
  peaks = [
    r["a"].get("process_peak_bytes")
    for s in SECTIONS
    for r in results.get(s, [])
    if r["a"]["framework"] == "jax"
  ]
  peaks = [p for p in peaks if p is not None]
  out.append(f"JAX process peak (never reset, all items): {_mb(max(peaks)) if peaks else '-'} MB")
  return out


def print_results(results, json_path):
  jax_info, torch_info = results["versions"]["jax"], results["versions"]["torch"]
  print(
    f"{'tiny CPU smoke run (not the target conditions); ' if results['tiny'] else ''}"
    f"platform {results['platform']} ({jax_info.get('device_kind')}), "
    f"torch on {results['torch_device']} ({torch_info.get('device_name') or 'cpu'}); "
    f"jax {jax_info.get('jax')}, torch {torch_info.get('torch')}, python "
    f"{results['versions']['python']}; wall {results['wall_s']:.0f} s of a "
    f"{results['budget_s']:.0f} s budget; {json_path}"
  )
  tables = (
    comparison_table,
    resize_conv_table,
    remat_table,
    torch_compile_table,
    parity_table,
    goals_table,
  )
  for table in tables:
    print()
    print(table(results))
  print()
  for note in notes(results):
    print(f"- {note}")
  ratios = [results["summary"][k] for k in ("inference_ratio", "train_ratio")]
  inference, train = ("nan" if r is None else f"{r:.2f}" for r in ratios)
  print(f"gpu jax/torch inference ratio={inference} train ratio={train}")
