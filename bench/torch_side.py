"""The PyTorch reference side: reference/torch_poolnet.py run as the original would be."""

import os
import time

import torch
import torch.nn.functional as F

from bench import common
from reference import torch_poolnet


def build_model(model, directory):
  """The reference model with seeded random weights, saved as an original .pth for JAX."""
  net = torch_poolnet.randomize_(torch_poolnet.build(model), seed=common.WEIGHT_SEED)
  path = common.weights_path(directory, model)
  if not os.path.exists(path):
    torch.save(net.state_dict(), path + ".tmp", _use_new_zipfile_serialization=False)
    os.replace(path + ".tmp", path)
  return net


def _nchw(array):
  return torch.from_numpy(array.transpose(0, 3, 1, 2).copy())


def _trainable(net):
  """Parameters the original optimises: everything but the frozen BatchNorm."""
  frozen = {
    id(p) for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d) for p in m.parameters()
  }
  return [p for p in net.parameters() if id(p) not in frozen]


def make_runner(task, directory):
  """A callable doing one timed unit of `task`."""
  net = build_model(task.model, directory)
  images, labels = common.inputs(task)
  x, y = _nchw(images), _nchw(labels)
  if task.kind == "infer":
    net.eval()

    def infer():
      with torch.no_grad():
        net(x)

    return infer

  net.train()  # BatchNorm stays frozen: FrozenBatchNorm2d always uses running statistics
  for m in net.modules():
    if isinstance(m, torch.nn.BatchNorm2d):
      m.weight.requires_grad_(False)
      m.bias.requires_grad_(False)
  optimizer = torch.optim.Adam(
    _trainable(net), lr=common.LEARNING_RATE, weight_decay=common.WEIGHT_DECAY
  )

  def train():
    optimizer.zero_grad()
    loss = F.binary_cross_entropy_with_logits(net(x), y, reduction="sum") / task.batch
    loss.backward()
    optimizer.step()

  return train


def setup(threads):
  torch.set_num_threads(threads)
  return {"torch": torch.__version__, "threads": torch.get_num_threads()}


def evaluation_compiles(model, directory, sizes):
  """(0, seconds): eager PyTorch compiles nothing; the same pass as jax_side's, timed."""
  net = build_model(model, directory).eval()
  start = time.perf_counter()
  with torch.no_grad():
    for h, w in sizes:
      net(torch.zeros(1, 3, h, w))
  return 0, time.perf_counter() - start
