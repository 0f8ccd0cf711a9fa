"""TFDS builders; importing this package registers them with tfds.

synthetic_salient (no download), duts, ecssd, pascal_s, dut_omron, hku_is, sod
(saliency sets from a manual dir), bsds_pascal_edges (edge set from a manual
dir) and salient_folder (a user's own folders or pair list). Each module's
docstring says how to use it.
"""

from poolnet_jax.data.builders import edges  # noqa: F401  (registers)
from poolnet_jax.data.builders import saliency  # noqa: F401  (registers)
from poolnet_jax.data.builders import salient_folder  # noqa: F401  (registers)
from poolnet_jax.data.builders import synthetic_salient  # noqa: F401  (registers)
