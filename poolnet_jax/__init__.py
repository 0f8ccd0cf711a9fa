"""PoolNet salient object detection in JAX/Flax.

    model, variables = poolnet_jax.load_pretrained("converted/")  # or "final.pth"
    logits = model.apply(variables, poolnet_jax.preprocess(rgb[None]))
    saliency = poolnet_jax.saliency_map(logits)
"""

from poolnet_jax.image import preprocess, saliency_map
from poolnet_jax.models import VARIANTS, create_model
from poolnet_jax.pretrained import (load_pretrained, load_torch_checkpoint, save_pretrained,
                                    save_torch_checkpoint)

__all__ = ["VARIANTS", "create_model", "preprocess", "saliency_map", "load_pretrained",
           "load_torch_checkpoint", "save_pretrained", "save_torch_checkpoint"]
