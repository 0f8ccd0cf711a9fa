"""Whether a compute dtype can hold the train step's gradients: each against float32's.

    python -m bench.gradient_range [--variant resnet50] [--size 300,400] [--scales 1,64,256]

One synthetic scene at the paper's size, the initial weights of the full model (the
original's scheme), the saliency loss as training sums it over pixels. For bfloat16 and
float16 compute (parameters and their gradients float32, as in training), and for
float16 with the loss multiplied by each `--scales` value (the gradients divided back):
the gradient entries that are not finite (an overflow, which stops a training run), the
entries that are 0 where float32's are not (an underflow: a parameter Adam then does
not move), the float32 size of those, and the relative L2 error of each parameter's
gradient (median, largest). The last line is `gradient_range float16 scale=1
nonfinite=N underflow=U first_overflow_scale=S` (S: the smallest scale tried that
overflows, or none).
"""

import time

import jax
import numpy as np

from bench import harness
from poolnet_jax.data import synthetic
from poolnet_jax.models import create_model
from poolnet_jax.train import step as step_lib


def scene_batch(height, width):
  """One synthetic scene as a batch of one: {"image", "label"}."""
  scene = synthetic.make_scene(synthetic.scene_rng(0, 0, 0), height, width)
  return {"image": scene.image[None], "label": scene.mask[None]}


def gradients(variant, width, dtype, batch, scale):
  """{parameter path: float64 gradient} of `scale` x the loss, divided by `scale`."""
  model = create_model(variant, width=width, dtype=dtype, conv="xla")
  size = model.min_input_size()
  variables = model.init(jax.random.PRNGKey(0), np.zeros((1, size, size, 3), np.float32))
  stats = variables.get("batch_stats", {})

  def loss(params):
    return scale * step_lib.device_loss(model, "saliency", params, stats, batch)

  with jax.default_matmul_precision("highest"):
    grads = jax.jit(jax.grad(loss))(variables["params"])
  return {
    jax.tree_util.keystr(path): np.asarray(leaf, np.float64) / scale
    for path, leaf in jax.tree_util.tree_leaves_with_path(grads)
  }


def compare(grads, reference):
  lost = [np.abs(reference[k][(g == 0) & (reference[k] != 0)]) for k, g in grads.items()]
  lost = np.concatenate(lost)
  errors = [
    np.linalg.norm(g - reference[k]) / max(np.linalg.norm(reference[k]), 1e-30)
    for k, g in grads.items()
  ]
  nonfinite = sum(int((~np.isfinite(g)).sum()) for g in grads.values())
  finite = nonfinite == 0
  return {
    "nonfinite": nonfinite,
    "underflow": int(lost.size),
    "lost_median": float(np.median(lost)) if lost.size else None,
    "error_median": float(np.median(errors)) if finite else None,
    "error_max": float(np.max(errors)) if finite else None,
  }


def _scientific(value):
  return "-" if value is None else f"{value:.1e}"


def main(argv=None):
  parser = harness.parser("python -m bench.gradient_range", __doc__)
  parser.add_argument("--variant", default="resnet50")
  parser.add_argument("--width", type=float, default=1.0, help="channel multiplier")
  parser.add_argument("--size", default="300,400", help="H,W of the scene")
  parser.add_argument("--scales", default="1,64,256", help="float16 loss scales")
  args = parser.parse_args(argv)
  height, width = (int(n) for n in args.size.split(","))
  batch = scene_batch(height, width)
  begin = time.perf_counter()
  reference = gradients(args.variant, args.width, "float32", batch, 1.0)
  count = sum(g.size for g in reference.values())
  runs = [("bfloat16", 1.0)] + [("float16", float(s)) for s in args.scales.split(",")]
  rows, found = [], {}
  for dtype, scale in runs:
    found[dtype, scale] = result = compare(
      gradients(args.variant, args.width, dtype, batch, scale), reference
    )
    rows.append(
      [
        dtype,
        f"{scale:g}",
        f"{result['nonfinite']:,}",
        f"{result['underflow']:,} ({100 * result['underflow'] / count:.2f} %)",
        _scientific(result["lost_median"]),
        _scientific(result["error_median"]),
        _scientific(result["error_max"]),
      ]
    )
  header = (
    "compute dtype",
    "loss scale",
    "non-finite entries",
    "0 where float32 is not",
    "their float32 median |g|",
    "rel. L2 error median",
    "largest",
  )
  print(f"{args.variant} width {args.width:g} at {height}x{width}: {count:,} gradient entries")
  print(harness.markdown(header, rows))
  print(f"({time.perf_counter() - begin:.0f} s)")
  plain = found.get(("float16", 1.0), {})
  overflowing = [s for (d, s), r in found.items() if d == "float16" and r["nonfinite"]]
  first = f"{min(overflowing):g}" if overflowing else "none"
  print(
    f"gradient_range float16 scale=1 nonfinite={plain.get('nonfinite')} "
    f"underflow={plain.get('underflow')} first_overflow_scale={first}"
  )


if __name__ == "__main__":
  main()
