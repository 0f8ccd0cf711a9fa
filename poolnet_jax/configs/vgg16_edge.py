"""PoolNet + edge (joint), VGG-16: the joint protocol on the VGG backbone."""

from poolnet_jax.configs import common


def get_config():
  c = common.base()
  c.model.variant = "vgg16_edge"
  c.backbone_checkpoint = "pretrained/vgg16_20M.pth"
  c.epoch_images = 30_000
  c.num_epochs = 11
  c.lr_decay_epochs = (8,)
  return c
