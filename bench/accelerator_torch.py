"""The PyTorch side of `python -m bench.accelerator`: the reference model on CUDA (or CPU).

float32 runs NCHW with TF32 on or off (`float32-tf32` / `float32`); bfloat16 runs under
autocast, channels_last. On CUDA `cudnn.benchmark` is on throughout (XLA autotunes its
convolutions too). Training is bench/torch_side.py's: summed BCE over the batch size,
Adam with L2 on the trainable parameters, BatchNorm frozen.
"""

import contextlib
import copy
import time

import torch
import torch.nn.functional as F

from bench import common, torch_side

torch_poolnet = torch_side.torch_poolnet
MODEL = "resnet50"
PRECISIONS = ("float32", "float32-tf32", "bfloat16")
_state = {}  # "net" (the weights both sides use, on the CPU), "warmups", "device"


def setup():
  cuda = torch.cuda.is_available()
  _state["device"] = torch.device("cuda" if cuda else "cpu")
  if cuda:
    torch.backends.cudnn.benchmark = True
  return {
    "torch": torch.__version__,
    "device": str(_state["device"]),
    "device_name": torch.cuda.get_device_name() if cuda else None,
    "cuda": torch.version.cuda,
    "cudnn": torch.backends.cudnn.version() if cuda else None,
    "cudnn_benchmark": cuda,
    "threads": torch.get_num_threads(),
  }


def prepare(directory, overrides, warmups):
  """Seeded random weights, saved as an original .pth for the JAX side."""
  net = torch_side.build_model(MODEL, directory, overrides)
  _state.update(net=net, warmups=warmups)
  return {"parameters": torch_poolnet.parameter_count(net)}


def normalize(item):
  if item.precision not in PRECISIONS:
    raise ValueError(f"PyTorch precision {item.precision!r}; expected one of {PRECISIONS}")
  if item.resize_conv is not None:
    raise ValueError("resize_conv is a JAX model setting")
  if item.option not in (None, "compile"):
    raise ValueError(f"PyTorch option {item.option!r}; expected None or 'compile'")
  return item


@contextlib.contextmanager
def _tf32(enabled):
  saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
  torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = enabled
  try:
    yield
  finally:
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def _cuda():
  return _state["device"].type == "cuda"


class Runner:
  """One inference or train step of the reference model; `call()` waits for the device."""

  def __init__(self, item):
    device, task = _state["device"], item.task()
    before = torch.cuda.memory_allocated() if _cuda() else 0
    net = copy.deepcopy(_state["net"]).to(device)
    images, labels = common.inputs(task)
    nchw = torch_side._nchw  # pylint: disable=protected-access
    x, y = nchw(images).to(device), nchw(labels).to(device)
    bf16 = item.precision == "bfloat16"
    if bf16:
      net, x = (
        net.to(memory_format=torch.channels_last),
        x.contiguous(memory_format=torch.channels_last),
      )
    autocast = (
      (lambda: torch.autocast(device.type, dtype=torch.bfloat16))
      if bf16
      else contextlib.nullcontext
    )
    tf32 = item.precision == "float32-tf32"
    # torch.compile compiles at the first call (first_call_s); the parameters stay net's.
    forward = torch.compile(net) if item.option == "compile" else net
    if item.kind == "infer":
      net.eval()

      def step():
        with torch.no_grad(), autocast(), _tf32(tf32):
          self.out = forward(x)
    else:
      net.train()  # FrozenBatchNorm2d always uses its running statistics
      for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
          m.weight.requires_grad_(False)
          m.bias.requires_grad_(False)
      trainable = torch_side._trainable(net)  # pylint: disable=protected-access
      optimizer = torch.optim.Adam(
        trainable, lr=common.LEARNING_RATE, weight_decay=common.WEIGHT_DECAY
      )

      def step():
        with _tf32(tf32):
          optimizer.zero_grad(set_to_none=True)
          with autocast():
            logits = forward(x)
          loss = F.binary_cross_entropy_with_logits(logits.float(), y, reduction="sum")
          (loss / task.batch).backward()
          optimizer.step()

    self.step, self.out = step, None
    start = time.perf_counter()
    self.call()  # cudnn.benchmark tries the algorithms here
    first_call_s = time.perf_counter() - start
    for _ in range(_state["warmups"]):
      start = time.perf_counter()
      self.call()
    self.resident_bytes = (torch.cuda.memory_allocated() - before) if _cuda() else 0
    self.info = {
      "first_call_s": first_call_s,
      "warm_s": time.perf_counter() - start,
      "tf32": tf32 if _cuda() else None,
      "note": None if _cuda() or not tf32 else "no CUDA: TF32 n/a, plain float32",
    }

  def call(self):
    self.step()
    if _cuda():
      torch.cuda.synchronize()

  def logits(self):
    if self.out is None:
      raise ValueError("logits come from inference runners only")
    return self.out.float().cpu().numpy().transpose(0, 2, 3, 1)


def build(item):
  return Runner(item)


def reset_peak(runner):
  """Starts this item's peak: the others' resident memory is taken off it in memory()."""
  if _cuda():
    torch.cuda.reset_peak_memory_stats()
    _state["others_bytes"] = torch.cuda.memory_allocated() - (
      runner.resident_bytes if runner else 0
    )


def memory(runner, runners):
  del runner, runners
  if not _cuda():
    return {"peak_bytes": None}
  return {"peak_bytes": int(torch.cuda.max_memory_allocated() - _state["others_bytes"])}
