"""PoolNet ResNet-50, the paper protocol: DUTS-TR, batch 1 at native size,
iter_size 10, Adam lr 5e-5 (L2 5e-4), 24 epochs, lr / 10 after epoch 15."""

from poolnet_jax.configs import common


def get_config():
  c = common.base()
  c.model.variant = "resnet50"
  c.backbone_checkpoint = "pretrained/resnet50_caffe.pth"
  return c
