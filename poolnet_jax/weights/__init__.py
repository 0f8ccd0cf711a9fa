"""Weights in and out: the authors' `.pth` files (read and written without torch), the
project's safetensors format, whole models loaded by name, and the NNX bridge.

- `torch_io/`: the restricted unpickler, `.pth` reader and writer, name tables, `variants`
  (which PoolNet or ImageNet backbone a state dict is, by its names), mapping, backbones;
- `safetensors_io`, `pretrained`: the project's format and loading / saving whole models;
- `inspector`: what a checkpoint holds, and the model it fits;
- `nnx_bridge`: PoolNet as a Flax NNX module.
"""
