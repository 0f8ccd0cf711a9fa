"""A smoke test of the whole loop in seconds: the tests train this one.

`synthetic_salient/tiny` (48 / 8 / 8 scenes of 64-96 px, built in seconds),
the demo's small model at 112x112 (images are resized up to it), a few updates.
"""

from poolnet_jax.configs import demo


def get_config():
  c = demo.get_config()
  c.dataset = "synthetic_salient/tiny"
  c.eval_dataset = "synthetic_salient/tiny"
  c.eval_split = "validation"
  c.eval_size = (112, 112)  # the tiny scenes are below the network's 111 px minimum
  c.data.size = (112, 112)
  c.batch_size = 2
  c.num_train_steps = 6
  c.lr_decay_steps = (4,)
  c.log_every_steps = 2
  c.eval_every_steps = 3
  c.checkpoint_every_steps = 3
  return c
