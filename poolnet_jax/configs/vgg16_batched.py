"""PoolNet VGG-16 with real batches: resnet50_batched.py's aspect-ratio buckets of 8 images,
no accumulation, with VGG-16's backbone and the paper's learning rate for it (1e-4).
Scale `batch_size` with the number of devices.
"""

from poolnet_jax.configs import resnet50_batched


def get_config():
  c = resnet50_batched.get_config()
  c.model.variant = "vgg16"
  c.backbone_checkpoint = "pretrained/vgg16_20M.pth"
  c.learning_rate = 1e-4
  return c
