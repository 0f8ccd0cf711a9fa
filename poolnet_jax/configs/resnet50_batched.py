"""PoolNet ResNet-50 with real batches: aspect-ratio buckets, no accumulation.

The paper's batch 1 leaves an accelerator idle. Here 8 images of one aspect
bucket form a batch and each call makes one update: 8 images per update, close
to the paper's 1 x iter_size 10, so its learning rate and schedule are kept.
Scale `batch_size` with the number of devices.
"""

from poolnet_jax.configs import common


def get_config():
  c = common.base()
  c.model.variant = "resnet50"
  c.backbone_checkpoint = "pretrained/resnet50_caffe.pth"
  c.data.mode = "buckets"
  c.batch_size = 8
  c.iter_size = 1
  return c
