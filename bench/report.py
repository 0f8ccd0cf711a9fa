"""Tables and the summary line of `python -m bench` (the CPU suite)."""

import sys

from bench import harness

COLUMNS = (
  "what",
  "JAX s (median)",
  "PyTorch s (median)",
  "JAX/PyTorch throughput",
  "JAX images/s",
  "PyTorch images/s",
  "JAX compile s",
  "peak RSS JAX / PyTorch MB",
  "load",
)


def progress(row):
  m = row["median_s"]
  print(
    f"{row['label']}: jax {m['jax']:.3f} s, torch {m['torch']:.3f} s, "
    f"ratio {row['ratio']:.2f} (load {row['loadavg']:.1f})",
    file=sys.stderr,
    flush=True,
  )


def _images_per_s(row, name):
  return row["task"]["batch"] / row["median_s"][name]


def summary(results):
  """(inference ratio, train ratio, batched images/s over torch's batch-1 protocol or None)."""
  rows = results["rows"]
  infer = [r["ratio"] for r in rows if r["task"]["kind"] == "infer"]
  infer_ratio = harness.geometric_mean(infer)
  train = [r for r in rows if r["task"]["kind"] == "train"]
  paper = next(r for r in train if r["task"]["batch"] == 1 and r["task"]["model"] == "resnet50")
  batched = next((r for r in train if r["task"]["batch"] > 1), None)
  batched_ratio = _images_per_s(batched, "jax") / _images_per_s(paper, "torch") if batched else None
  return infer_ratio, paper["ratio"], batched_ratio


def table(results):
  """Markdown table: one row per task, medians, throughput ratio, compile time, peak memory."""
  rows = []
  for r in results["rows"]:
    m, rss = r["median_s"], r["peak_rss_mb"]
    rows.append(
      [
        r["label"],
        f"{m['jax']:.3f}",
        f"{m['torch']:.3f}",
        f"{r['ratio']:.2f}",
        f"{_images_per_s(r, 'jax'):.3f}",
        f"{_images_per_s(r, 'torch'):.3f}",
        f"{r['compile_s']:.1f}",
        f"{rss['jax']:.0f} / {rss['torch']:.0f}",
        f"{r['loadavg']:.1f}",
      ]
    )
  return harness.markdown(COLUMNS, rows)


def print_results(results):
  info = results["versions"]["jax"]
  print(
    f"{'tiny smoke run (not the benchmark); ' if results.get('tiny') else ''}"
    f"jax {info['jax']}, conv={info['conv']}, XLA_FLAGS {info['xla_flags'] or '(none)'}, "
    f"{results['threads']} threads; load {results['load_before']:.1f} -> "
    f"{results['load_after']:.1f}; wall {results['wall_s']:.0f} s"
  )
  print(table(results))
  first = next(r for r in results["rows"] if r["task"]["kind"] == "train")
  print(
    f"{first['label']} compile: cold {first['compile_s']:.1f} s, "
    f"from the persistent cache {results['cached_compile_s']:.1f} s"
  )
  if "evaluation" in results:
    e = results["evaluation"]
    print(
      f"evaluation pass, {e['images']} images of {e['sizes']} sizes: "
      f"{e['compiles']} compilations, {e['seconds']:.1f} s"
    )
  infer, train, batched = summary(results)
  if batched is not None:
    print(
      f"batched training (JAX 8x320x320) over PyTorch's batch-1 protocol: {batched:.2f}x images/s"
    )
  print(f"jax/torch inference ratio={infer:.2f} train ratio={train:.2f}")
