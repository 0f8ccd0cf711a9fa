"""The PyTorch reference side: reference/torch_poolnet.py run as the original would be."""

import os
import time

import torch
import torch.nn.functional as F
from torch import nn

from bench import common
from reference import torch_poolnet


def build_model(model, directory, overrides=None):
  """The reference model (cut to `overrides`' width and stages: shrink_) with seeded random
  weights, saved as an original .pth for JAX."""
  net = torch_poolnet.build(model)
  if overrides:
    if model != "resnet50":
      raise ValueError(f"only resnet50 is cut to a smaller size, not {model}")
    net = shrink_(net, **overrides)
  net = torch_poolnet.randomize_(net, seed=common.WEIGHT_SEED)
  path = common.weights_path(directory, model)
  if overrides or not os.path.exists(path):
    torch.save(net.state_dict(), path + ".tmp", _use_new_zipfile_serialization=False)
    os.replace(path + ".tmp", path)
  return net


def shrink_(net, width, stages):
  """The reference ResNet-50 PoolNet cut to create_model's `width` and `stages`, in place.

  Every convolution and BatchNorm is rebuilt with its channels scaled as the Flax model
  scales them (`layers.channels`; the 3 input and 1 output channels stay) and each
  ResNet stage keeps its first `stages[i]` blocks. The converter's shape check (the JAX
  side's prepare) verifies the result against the Flax model.
  """
  # Imported here: the CPU suite's torch worker (full size) stays free of JAX and Flax,
  # whose memory would count in PyTorch's peak RSS.
  from poolnet_jax.models.layers import channels  # pylint: disable=import-outside-toplevel

  resnet = net.base.resnet
  for index, blocks in enumerate(stages, start=1):
    layer = getattr(resnet, f"layer{index}")
    setattr(resnet, f"layer{index}", nn.Sequential(*list(layer)[:blocks]))
  scale = lambda c: c if c in (1, 3) else channels(c, width)
  for module in list(net.modules()):
    for name, child in list(module.named_children()):
      if isinstance(child, nn.Conv2d):
        setattr(
          module,
          name,
          nn.Conv2d(
            scale(child.in_channels),
            scale(child.out_channels),
            child.kernel_size,
            child.stride,
            child.padding,
            child.dilation,
            bias=child.bias is not None,
          ),
        )
      elif isinstance(child, nn.BatchNorm2d):
        setattr(module, name, type(child)(scale(child.num_features)))
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
  net = build_model(task.model, directory, common.TINY if task.tiny else None)
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
