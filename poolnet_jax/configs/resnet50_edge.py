"""PoolNet + edge (joint), ResNet-50: one edge and one saliency image per call,
lr 5e-5, 11 epochs of 30,000 images, lr / 10 after epoch 8."""

from poolnet_jax.configs import common


def get_config():
  c = common.base()
  c.model.variant = "resnet50_edge"
  c.backbone_checkpoint = "pretrained/resnet50_caffe.pth"
  c.epoch_images = 30_000  # the original's fixed epoch length for the joint model
  c.num_epochs = 11
  c.lr_decay_epochs = (8,)
  return c
