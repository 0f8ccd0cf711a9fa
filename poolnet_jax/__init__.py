"""PoolNet salient object detection in JAX/Flax.

    model, variables = poolnet_jax.load_pretrained("converted/")
    logits = model.apply(variables, poolnet_jax.preprocess(rgb[None]))
    saliency = poolnet_jax.saliency_map(logits)
"""

from poolnet_jax.image import preprocess, saliency_map
from poolnet_jax.models import VARIANTS, create_model

__all__ = ["VARIANTS", "create_model", "preprocess", "saliency_map"]
