"""The default run: a small PoolNet trained from scratch on the built-in synthetic set.

`python train.py` builds `synthetic_salient/small` (3,000 training scenes at
128-160 px, about 20 s) on first use, then trains a ResNet-50 PoolNet at 1/8
width with one block per stage at 128x128 for a few minutes on a 2-core CPU.
The paper configs (resnet50.py, ...) keep the full-size model.
"""

from configs import common


def get_config():
  c = common.base()
  c.model = "resnet50"
  c.model_overrides.width = 0.125
  c.model_overrides.stages = (1, 1, 1, 1)
  c.backbone_checkpoint = ""

  c.dataset = "synthetic_salient/small"
  c.eval_dataset = "synthetic_salient/small"
  c.eval_split = "test"
  c.eval_max_images = 0
  c.eval_size = (128, 128)  # one compiled shape; maps are resized back to each image
  c.data.mode = "fixed"
  c.data.size = (128, 128)

  c.batch_size = 8
  c.iter_size = 1
  c.learning_rate = 1e-3
  c.num_train_steps = 2400
  c.lr_decay_epochs = ()
  c.lr_decay_steps = (1800,)
  c.log_every_steps = 50
  c.eval_every_steps = 800
  c.checkpoint_every_steps = 400
  return c
