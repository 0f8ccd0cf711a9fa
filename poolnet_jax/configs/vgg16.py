"""PoolNet VGG-16, the paper protocol with the authors' VGG learning rate 1e-4."""

from poolnet_jax.configs import common


def get_config():
  c = common.base()
  c.model.variant = "vgg16"
  c.learning_rate = 1e-4
  c.backbone_checkpoint = "pretrained/vgg16_20M.pth"
  return c
