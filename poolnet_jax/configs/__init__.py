"""Training configs, one `get_config()` file each: `demo` (the default run), `tiny`, the
paper's (`resnet50`, `vgg16`, `resnet50_edge`, `vgg16_edge`) and the batched ones;
`common.base()` is the one source of defaults. A config of your own, anywhere, starts
from it: `from poolnet_jax.configs import common`.
"""
