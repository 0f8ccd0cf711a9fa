"""bench.aot: the programs compiled for TPU and GPU targets without a chip, and what the
HLO readers and the batch search make of hand-written inputs."""

import dataclasses
import json
import math
import os
import subprocess
import sys
import types

import jax
import jax.numpy as jnp
import pytest

from bench import aot
from bench import aot_hlo
from bench import aot_programs
from bench import aot_report
from bench import aot_search
from bench import aot_targets
from poolnet_jax.train import parallel as parallel_lib
from poolnet_jax.train import recipe

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

COMPILED_HLO = """\
HloModule jit_step, entry_computation_layout={(bf16[8,3,3,16]{3,2,1,0})->f32[8]{0}}

%fused_convert (param_0.1: f32[8,16]) -> bf16[8,16] {
  %param_0.1 = f32[8,16]{1,0} parameter(0)
  ROOT %convert.1 = bf16[8,16]{1,0} convert(%param_0.1)
}

ENTRY %main (p0: bf16[8,3,3,16], p1: bf16[3,3,16,16], p2: f32[16,4]) -> f32[8] {
  %p0 = bf16[8,3,3,16]{3,2,1,0} parameter(0)
  %p1 = bf16[3,3,16,16]{3,2,1,0} parameter(1)
  %p2 = f32[16,4]{1,0} parameter(2)
  %conv = (bf16[8,3,3,16]{3,2,1,0}, u8[0]{0}) custom-call(%p0, %p1), custom_call_target="__cudnn$convForward"
  %plain = f32[8,3,3,16]{3,2,1,0} convolution(%p2, %p1), window={size=3x3}, dim_labels=b01f_01io->b01f
  %gemm = (f32[8,4]{1,0}, s8[0]{0}) custom-call(%p2, %p2), custom_call_target="__cublas$lt$matmul"
  %dot.3 = bf16[8,4]{1,0} dot(%p0, %p1), lhs_contracting_dims={1}, rhs_contracting_dims={0}
  %ars = f32[16,4]{1,0} all-reduce-start(%p2), replica_groups={{0,1}}, to_apply=%add
  %ard = f32[16,4]{1,0} all-reduce-done(%ars)
  %ag = f32[32,4]{1,0} all-gather(%p2), dimensions={0}
  ROOT %r = f32[8]{0} reduce(%ard), dimensions={1}
}
"""

LOWERED = """\
%1 = stablehlo.convolution(%a, %b) dim_numbers = [b, 0, 1, f]x[0, 1, i, o]->[b, 0, 1, f], \
window = {} : (tensor<8x32x32x16xbf16>, tensor<3x3x16x16xbf16>) -> tensor<8x32x32x16xbf16>
%2 = stablehlo.convolution(%c, %d) dim_numbers = [b, 0, 1, f]x[0, 1, i, o]->[b, 0, 1, f], \
window = {} : (tensor<8x32x32x16xf32>, tensor<3x3x16x16xf32>) -> tensor<8x32x32x16xf32>
%3 = stablehlo.dot_general %e, %f, contracting_dims = [1] x [0] : (tensor<4x8xf32>, \
tensor<8x2xf32>) -> tensor<4x2xf32>
"""


def test_collectives_count_asynchronous_pairs_once():
  parsed = aot_hlo.instructions(COMPILED_HLO)
  assert aot_hlo.collectives(parsed) == {"all-gather": 1, "all-reduce": 1}


def test_compute_types_read_cudnn_and_cublas_calls_by_their_first_operand():
  parsed = aot_hlo.instructions(COMPILED_HLO)
  assert aot_hlo.compute_types(parsed) == {
    "convolution": {"bf16": 1, "f32": 1},
    "matmul": {"bf16": 1, "f32": 1},
  }


def test_lowered_compute_types_read_stablehlo_operands():
  assert aot_hlo.lowered_compute_types(LOWERED) == {
    "convolution": {"bf16": 1, "f32": 1},
    "matmul": {"f32": 1},
  }


class _FakePrograms:
  """A programs library whose train step needs `base + per_image * batch` bytes."""

  TRAIN = "train"

  def __init__(self, base, per_image, refuse_above=None, error=None):
    self.base, self.per_image, self.compiled = base, per_image, []
    self.refuse_above, self.error = refuse_above, error

  def default_setting(self, config, dtype=None, remat=None):
    return aot_programs.Setting(config, 1, (8, 8), dtype, remat, "pmap")

  def programs(self, setting, devices, kinds):
    batch = setting.per_chip_batch
    self.compiled.append(batch)
    stats = types.SimpleNamespace(
      argument_size_in_bytes=self.base,
      output_size_in_bytes=0,
      temp_size_in_bytes=self.per_image * batch,
      alias_size_in_bytes=0,
    )
    compiled = types.SimpleNamespace(memory_analysis=lambda: stats)
    total = self.base + self.per_image * batch

    def compile_(compiler_options=None):
      if self.refuse_above is not None and total > self.refuse_above:
        raise self.error(total)
      return compiled

    lowered = types.SimpleNamespace(compile=compile_)
    program = types.SimpleNamespace(lower=lambda *args: lowered)
    return {"accumulate_saliency": (program, ())}


def _fake_target(usable, platform="cuda"):
  """A target whose usable memory is `usable` bytes (a GPU's is 75 % of its memory)."""
  memory = usable if platform == "tpu" else math.ceil(usable / aot_targets.GPU_MEMORY_FRACTION)
  target = aot_targets.Target("fake", platform, memory, 1e12, {1: "x"})
  assert target.usable_bytes == usable
  return target


def test_largest_batch_brackets_the_memory_limit():
  # 100 + 13 b <= 1000: b = 69 fits, 70 does not.
  fake = _FakePrograms(100, 13)
  found = aot_search.largest_batch(fake, _fake_target(1000), [], "c", (8, 8), "f32", False, 6)
  assert (found["largest"], found["smallest_failing"]) == (69, 70)
  assert found["compiles"] == len(fake.compiled) <= 6


def test_largest_batch_is_zero_when_one_image_does_not_fit():
  found = aot_search.largest_batch(
    _FakePrograms(2000, 1), _fake_target(1000), [], "c", (8, 8), "f32", False, 6
  )
  assert (found["largest"], found["smallest_failing"]) == (0, 1)


def _hbm_exhausted(total):
  """libtpu's refusal of a program that does not fit (its wording, bytes in K)."""
  return jax.errors.JaxRuntimeError(
    "RESOURCE_EXHAUSTED: XLA:TPU compile permanent error. Ran out of memory in memory space "
    f"hbm. Used {total / 1024:.2f}K of 0.98K hbm. Exceeded hbm capacity by 1K. Total hbm "
    f"usage >= {total / 1024:.2f}K: ... the total memory required for HLO temporaries "
    f"({total / 1024:.2f}K) exceeds available HBM (0.98K)."
  )


def test_the_bytes_of_libtpus_refusal_are_read():
  message = (
    "RESOURCE_EXHAUSTED: Ran out of memory on HBM, the total memory required for HLO "
    "temporaries (18.13G) exceeds available HBM (15.75G)"
  )
  assert aot_search.refused_bytes(RuntimeError(message)) == int(18.13 * 2**30)
  assert aot_search.refused_bytes(RuntimeError("RESOURCE_EXHAUSTED: out of memory")) == 0
  assert aot_search.refused_bytes(RuntimeError("INVALID_ARGUMENT: bad shape")) is None


def test_largest_batch_treats_a_refused_compile_as_does_not_fit():
  """libtpu refuses a program over its HBM instead of reporting its bytes: 100 + 13 b <= 1000
  still gives 69 and 70, and the refused batches are named, with the bytes they asked for."""
  fake = _FakePrograms(100, 13, refuse_above=1000, error=_hbm_exhausted)
  target = _fake_target(1000, "tpu")
  found = aot_search.largest_batch(fake, target, [], "c", (8, 8), "f32", False, 8)
  assert "error" not in found
  assert (found["largest"], found["smallest_failing"]) == (69, 70)
  assert 70 in found["refused_by_compiler"]
  assert all(found["bytes"][str(b)] > 1000 for b in found["refused_by_compiler"])
  assert "70 (refused by the compiler)" in aot_report.search_table({"k": found})


def test_on_a_tpu_the_compilers_verdict_decides():
  """libtpu admits programs whose summed buffers exceed the chip's HBM (its own accounting):
  what it compiles fits. 100 + 13 b <= 1100: 76 compiles, 77 is refused."""
  fake = _FakePrograms(100, 13, refuse_above=1100, error=_hbm_exhausted)
  target = _fake_target(1000, "tpu")
  found = aot_search.largest_batch(fake, target, [], "c", (8, 8), "f32", False, 10)
  assert (found["largest"], found["smallest_failing"]) == (76, 77), found
  assert found["bytes"]["76"] == 1088 > target.usable_bytes


def test_a_refusal_below_the_limit_bisects_instead_of_stepping_down():
  """libtpu may refuse a program whose buffers sum below the HBM (its figure below the
  limit says nothing of the slope): 100 + 13 b fits by the line up to 69, the compiler
  takes up to 800, so 53 fits and 54 does not. Stepping down from the line's 69 one batch
  a compile never got there (it stopped at 8); a bracket left open is said to be open."""
  fake = _FakePrograms(100, 13, refuse_above=800, error=_hbm_exhausted)
  target = _fake_target(1000, "tpu")
  found = aot_search.largest_batch(fake, target, [], "c", (8, 8), "f32", False, 10)
  assert (found["largest"], found["smallest_failing"]) == (53, 54)
  cut = aot_search.largest_batch(fake, target, [], "c", (8, 8), "f32", False, 5)
  assert not aot_search.narrowed(cut["largest"], cut["smallest_failing"]), cut
  assert "ran out before the bracket closed" in aot_report.search_table({"k": cut})


def test_a_tpu_row_fits_when_libtpu_places_it(monkeypatch):
  """A row's verdict follows the search's: on a TPU what compiled fits (libtpu admitted
  1088 bytes of 1000) and what libtpu refused neither compiled nor fits, with the bytes it
  asked for; on a GPU the bytes decide."""
  monkeypatch.setattr(aot, "_check_platform", lambda compiled, target: None)
  monkeypatch.setattr(
    aot_hlo, "analyse", lambda lowered, compiled: {"memory": aot_hlo.memory(compiled), "flops": 0}
  )
  setting = aot_programs.Setting("c", 76, (8, 8), "float32", False, "pmap")
  fake = _FakePrograms(100, 13, refuse_above=1100, error=_hbm_exhausted)
  program, _ = fake.programs(setting, [], (fake.TRAIN,))["accumulate_saliency"]
  tpu, gpu = _fake_target(1000, "tpu"), _fake_target(1000)
  assert aot.compile_row(tpu, 1, setting, "train", program, ())["fits"] is True
  assert aot.compile_row(gpu, 1, setting, "train", program, ())["fits"] is False
  setting = dataclasses.replace(setting, per_chip_batch=77)
  program, _ = fake.programs(setting, [], (fake.TRAIN,))["accumulate_saliency"]
  row = aot.compile_row(tpu, 1, setting, "train", program, ())
  assert "error" in row and row["fits"] is False
  assert row["refused_bytes"] == int(1.08 * 2**10)  # the message's figure, "(1.08K)"
  assert "| 0.00 GiB needed (refused by the compiler) | no |" in aot_report.rows_table([row])


def test_largest_batch_reports_other_compile_errors():
  fake = _FakePrograms(100, 13, refuse_above=0, error=lambda total: ValueError("bad shape"))
  found = aot_search.largest_batch(fake, _fake_target(1000), [], "c", (8, 8), "f32", False, 6)
  assert found["largest"] is None and found["error"] == "ValueError: bad shape"


def test_a_program_compiled_for_the_host_is_refused():
  compiled = jax.jit(lambda x: x * 2).lower(jnp.ones(3)).compile()
  with pytest.raises(RuntimeError, match=r"compiled for \['cpu'\], not gpu"):
    aot._check_platform(compiled, aot_targets.TARGETS["h100"])
  aot._check_platform(compiled, aot_targets.Target("host", "cpu", 1, 1.0, {}))


def test_pmap_trainer_keeps_devices_other_than_the_hosts():
  """As many compile-only devices as the host has CPU devices are still passed to pmap
  (else pmap would compile for the CPU)."""
  other = [types.SimpleNamespace(process_index=0, platform="gpu") for _ in jax.devices()]
  model = recipe.create_model_from_config(aot_programs.load_config("tiny"))
  trainer = parallel_lib.make_trainer(model, 1, "pmap", other)
  assert trainer._pmap_devices() == other
  assert parallel_lib.make_trainer(model, 1, "pmap")._pmap_devices() is None


def _tiny_run(tmp_path):
  out = tmp_path / "aot.json"
  env = dict(os.environ)
  env.pop("JAX_PLATFORMS", None)
  run = subprocess.run(
    [sys.executable, "-m", "bench.aot", "--tiny", "--json", str(out)],
    cwd=REPO,
    env=env,
    capture_output=True,
    text=True,
    timeout=900,
  )
  if run.returncode == 2 and " compiler: " in run.stderr:
    pytest.skip(f"compile-only backends not installed: {run.stderr.strip()}")
  assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
  return run, json.loads(out.read_text())["rows"]


@pytest.mark.slow
def test_tiny_model_compiles_for_a_tpu_and_a_gpu(tmp_path):
  run, rows = _tiny_run(tmp_path)
  assert run.stdout.strip().splitlines()[-1] == "aot targets=8 compiled=8 fits=8"
  modes = {(row["target"], row["setting"].split()[-1]) for row in rows.values()}
  assert modes == {("v5e", "pmap"), ("h100", "pmap"), ("h100", "shard_map"), ("h100", "jit")}
  for row in rows.values():
    name, mode = row["program"], row["setting"].split()[-1]
    where = f"{row['target']} {row['setting']} {name}"
    lowered, compiled = row["lowered_types"], row["compiled_types"]
    # bf16 asks for bf16 convolutions everywhere: the only f32 products are the score
    # map's (one channel, resized in f32) in the backward pass.
    assert "f32" not in lowered["convolution"], where
    if name in ("inference", "export"):
      assert "f32" not in lowered["matmul"], where
    if name != "update":
      assert lowered["convolution"].get("bf16", 0) > 0, where
      if row["target"] == "h100":  # every convolution a cuDNN call on bf16
        assert compiled["convolution"].get("bf16", 0) > 0, where
        assert "f32" not in compiled["convolution"], where
      else:
        assert row["flops"] > 0, where
    if name == "update":
      want = {} if mode == "jit" else {"all-reduce": 1}
      assert row["collectives"] == want, where
    elif mode == "jit":  # the gradient is all-reduced inside the program, by design
      assert set(row["collectives"]) == {"all-reduce"}, where
    else:  # the gradient programs of pmap and shard_map: no collective at all
      assert row["collectives"] == {}, where


def test_a_gpu_program_without_a_triton_tiling_compiles_with_cublas():
  """XLA:GPU without autotuning may find no Triton tiling for a small product: the row is
  compiled again with Triton GEMMs off and says so; any other error stays an error."""
  host = jax.jit(lambda x: x * 2).lower(jnp.ones(3)).compile()
  gpu = aot_targets.TARGETS["h100"]

  def fake(message):
    def compile(compiler_options=None):  # pylint: disable=redefined-builtin
      if compiler_options != aot_targets.NO_TRITON_GEMM:
        raise RuntimeError(message)
      return host

    lowered = types.SimpleNamespace(compile=compile, as_text=lambda: "")
    return types.SimpleNamespace(lower=lambda *args: lowered)

  setting = aot_programs.Setting("c", 1, (8, 8), "bfloat16", False, "pmap")
  host_target = aot_targets.Target("host", "cpu", 2**30, 1.0, {})
  row = aot.compile_row(host_target, 1, setting, "inference", fake("other"), ())
  assert row["error"] == "RuntimeError: other"
  tiling = f"INTERNAL: {aot_targets.TRITON_TILING} that satisfy hlo: %dot.74"
  row = aot.compile_row(host_target, 1, setting, "inference", fake(tiling), ())
  assert "error" in row  # only XLA:GPU's failure is retried
  gpu_row = aot.compile_row(gpu, 1, setting, "inference", fake(tiling), ())
  assert gpu_row["compiler_options"] == aot_targets.NO_TRITON_GEMM
  assert "compiled for ['cpu'], not gpu" in gpu_row["error"]  # then the platform check


# docs/aot.md's sections and the results they are printed from (bench/results/).
RECORDS = {"## H100 and H200": "aot_gpu.json", "## TPU": "aot_tpu.json"}
TPU_TARGETS = "v5e,v5p,v6e"


def _section(text, heading):
  lines = text.split(f"\n{heading}", 1)[1].splitlines()
  end = next((i for i, line in enumerate(lines[1:], 1) if line.startswith("## ")), len(lines))
  return [f"{heading}{lines[0]}"] + lines[1:end]


def _record(name):
  with open(os.path.join(REPO, "bench", "results", name), encoding="utf-8") as f:
    return json.load(f)


def _planned(targets):
  return aot.planned_keys(aot.plan(aot.parse_args(["--targets", targets]), aot_programs))


@pytest.mark.parametrize("heading", sorted(RECORDS))
def test_the_tables_of_docs_aot_are_the_recorded_results(heading):
  """Every table row of the page is printed from bench/results/ (so a run that continues
  the record and a page that says what it holds cannot drift apart)."""

  with open(os.path.join(REPO, "docs", "aot.md"), encoding="utf-8") as f:
    section = _section(f.read(), heading)
  data = _record(RECORDS[heading])
  want = aot_report.rows_table(list(data["rows"].values())).splitlines()
  if data["search"]:
    want += aot_report.search_table(data["search"]).splitlines()
  assert [line for line in section if line.startswith("|")] == want


def test_the_counts_docs_aot_gives_are_the_records():
  """The GPU run's last line and the TPU heading's "N of the M programs": M is what the
  full plan compiles, N the rows of the record that compiled."""
  with open(os.path.join(REPO, "docs", "aot.md"), encoding="utf-8") as f:
    text = f.read()
  gpu, tpu = _record("aot_gpu.json")["rows"], _record("aot_tpu.json")["rows"]
  planned = _planned("h100,h200")
  assert set(gpu) == set(planned)
  fits = sum(gpu[k].get("fits", False) for k in planned)
  compiled = sum("error" not in gpu[k] for k in planned)
  line = f"aot targets={len(planned)} compiled={compiled} fits={fits}"
  assert line in "\n".join(_section(text, "## H100 and H200")), line
  planned = _planned(TPU_TARGETS)
  assert set(tpu) <= set(planned), set(tpu) - set(planned)
  compiled = sum("error" not in row for row in tpu.values())
  heading = f"## TPU: {compiled} of the {len(planned)} programs"
  assert _section(text, "## TPU")[0].startswith(heading), heading
