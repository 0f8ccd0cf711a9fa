"""What a compiled program holds, read from its optimized HLO and XLA's analyses: memory
per chip, collectives by kind, convolutions and matrix products by element type, FLOPs."""

import collections
import re

COLLECTIVES = (
  "all-reduce",
  "all-gather",
  "reduce-scatter",
  "collective-permute",
  "all-to-all",
  "collective-broadcast",
  "ragged-all-to-all",
)
_INSTRUCTION = re.compile(r"^\s*(?:ROOT\s+)?%?([\w.\-]+)\s*=\s*(.*)$")
_ELEMENT = re.compile(r"^\(?\s*([a-z][a-z0-9]*)\[")
_CUDNN_CONV = re.compile(r'custom_call_target="__cudnn\$conv')
_GEMM = re.compile(r'custom_call_target="__cublas\$(lt\$)?(gemm|matmul)')


def _split_type(rhs):
  """(result type, rest) of an instruction's right-hand side: a tuple type has spaces."""
  if rhs.startswith("("):
    depth = 0
    for i, char in enumerate(rhs):
      depth += {"(": 1, ")": -1}.get(char, 0)
      if depth == 0:
        return rhs[: i + 1], rhs[i + 1 :].lstrip()
  head, _, rest = rhs.partition(" ")
  return head, rest


def instructions(hlo_text):
  """[(name, result type, opcode, operand names, line)] of every instruction of the module
  (fused computations included)."""
  out = []
  for line in hlo_text.splitlines():
    match = _INSTRUCTION.match(line)
    if not match or line.lstrip().startswith(("HloModule", "//")):
      continue
    result, rest = _split_type(match.group(2))
    opcode, _, args = rest.partition("(")
    if not opcode or " " in opcode.strip():
      continue
    operands = re.findall(r"%([\w.\-]+)", args.split(")")[0])
    out.append((match.group(1), result, opcode.strip(), operands, line))
  return out


def element_type(type_text):
  """'bf16' of 'bf16[8,3]{1,0}', of a tuple's first element; None for token / empty."""
  match = _ELEMENT.match(type_text)
  return match.group(1) if match else None


def collectives(parsed):
  """{kind: count}: asynchronous pairs (-start / -done) count once."""
  counts = collections.Counter()
  for _, _, opcode, _, _ in parsed:
    base = opcode[: -len("-start")] if opcode.endswith("-start") else opcode
    if base in COLLECTIVES and not opcode.endswith("-done"):
      counts[base] += 1
  return dict(sorted(counts.items()))


def compute_types(parsed):
  """{"convolution": {input element type: count}, "matmul": {...}}: convolutions (XLA's
  `convolution` and cuDNN calls) and matrix products (`dot`, cuBLAS calls) by the element
  type of their first operand, or their result where the operand is not in the module."""
  types = {name: result for name, result, _, _, _ in parsed}
  out = {"convolution": collections.Counter(), "matmul": collections.Counter()}
  for _, result, opcode, operands, line in parsed:
    if opcode == "convolution" or (opcode == "custom-call" and _CUDNN_CONV.search(line)):
      kind = "convolution"
    elif opcode == "dot" or (opcode == "custom-call" and _GEMM.search(line)):
      kind = "matmul"
    else:
      continue
    source = types.get(operands[0]) if operands else None
    out[kind][element_type(source or result) or "?"] += 1
  return {kind: dict(sorted(counter.items())) for kind, counter in out.items()}


_STABLEHLO_OP = re.compile(
  r"stablehlo\.(convolution|dot_general)\b.*?:\s*\(\s*tensor<((?:[0-9?]+x)*)([a-z][a-z0-9]*)"
)


def lowered_compute_types(stablehlo_text):
  """{"convolution": {first operand's element type: count}, "matmul": {...}} of the
  lowered program (StableHLO): what the project asks the compiler for, before XLA's own
  choices."""
  out = {"convolution": collections.Counter(), "matmul": collections.Counter()}
  for match in _STABLEHLO_OP.finditer(stablehlo_text):
    kind = "convolution" if match.group(1) == "convolution" else "matmul"
    out[kind][match.group(3)] += 1
  return {kind: dict(sorted(counter.items())) for kind, counter in out.items()}


def memory(compiled):
  """Bytes per chip: arguments, outputs, temporaries, aliased (donated) and their total
  (arguments + outputs + temporaries - aliased): what the program needs while it runs."""
  stats = compiled.memory_analysis()
  if isinstance(stats, (list, tuple)):
    stats = stats[0]
  names = ("argument", "output", "temp", "alias", "generated_code")
  out = {name: int(getattr(stats, f"{name}_size_in_bytes", 0) or 0) for name in names}
  out["total"] = out["argument"] + out["output"] + out["temp"] - out["alias"]
  return out


def flops(compiled):
  """XLA's FLOP count of the program per chip, or None (the GPU compiler gives none)."""
  try:
    cost = compiled.cost_analysis()
  except Exception:  # pylint: disable=broad-except
    return None
  if isinstance(cost, (list, tuple)):
    cost = cost[0] if cost else None
  value = (cost or {}).get("flops")
  return float(value) if value else None


def analyse(lowered, compiled):
  """memory, collectives, compute types (lowered and compiled) and FLOPs of one program."""
  parsed = instructions(compiled.as_text())
  return {
    "memory": memory(compiled),
    "collectives": collectives(parsed),
    "lowered_types": lowered_compute_types(lowered.as_text()),
    "compiled_types": compute_types(parsed),
    "flops": flops(compiled),
  }
