"""The default run: a small PoolNet trained from scratch on the built-in synthetic set.

`python train.py` builds `synthetic_salient/small` (3,000 training scenes at
128-160 px) on first use, then trains a ResNet-50 PoolNet at 1/8 width with one
block per stage at 112x112, 3,750 updates of 8 images (about 9 minutes on 2 CPU
cores; measured: BENCHMARKS.md, "The first command"). No ImageNet weights: `init`
"skipinit" (models/init.py) replaces the original's N(0, 0.01) convolutions, under
which activations vanish through the frozen, identity BatchNorm. The paper configs
(resnet50.py, ...) keep the full-size model.
"""

from poolnet_jax.configs import common


def get_config():
  c = common.base()
  c.model.variant = "resnet50"
  c.model.width = 0.125
  c.model.stages = (1, 1, 1, 1)
  c.backbone_checkpoint = ""
  c.init = "skipinit"  # "" = the original's N(0, 0.01)

  c.dataset = "synthetic_salient/small"
  c.eval_dataset = "synthetic_salient/small"
  c.eval_split = "test"
  c.eval_max_images = 0
  c.eval_size = (112, 112)  # one compiled shape; maps are resized back to each image
  c.data.mode = "fixed"
  c.data.size = (112, 112)  # the smallest a ResNet-50 PoolNet accepts is 111

  c.batch_size = 8
  c.iter_size = 1
  # Cosine from 1e-3 after 250 warmup updates (why: BENCHMARKS.md, "The first command").
  c.learning_rate = 1e-3
  c.lr_schedule = "cosine"
  c.lr_end_factor = 0.01
  c.warmup_steps = 250
  c.num_train_steps = 3750
  c.lr_decay_epochs = ()
  c.log_every_steps = 50
  c.eval_every_steps = 1250
  c.checkpoint_every_steps = 1250
  return c
