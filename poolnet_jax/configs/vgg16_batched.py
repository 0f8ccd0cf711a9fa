"""PoolNet VGG-16 with real batches: aspect-ratio buckets, no accumulation.

The paper's batch 1 leaves an accelerator idle. Here 8 images of one aspect
bucket form a batch and each call makes one update: 8 images per update, close
to the paper's 1 x iter_size 10, so its learning rate (1e-4 for VGG) and schedule are kept.
Scale `batch_size` with the number of devices.
"""

from poolnet_jax.configs import common


def get_config():
  c = common.base()
  c.model.variant = "vgg16"
  c.backbone_checkpoint = "pretrained/vgg16_20M.pth"
  c.data.mode = "buckets"
  c.batch_size = 8
  c.iter_size = 1
  c.learning_rate = 1e-4
  return c
