"""CPU speed-ups for PoolNet's convolutions, as pure jnp functions.

Chosen once by `create_model` (`models.layers.ConvImpl`) and handed to the
modules; nothing here reads the environment or the backend.

- `winograd`: stride-1 3x3 convolutions as Winograd F(2x2, 3x3), with their gradients;
- `resize_conv`: a 3x3 convolution of a bilinearly upsampled map without that map;
- `matmul_conv`: 1x1 convolutions and maps smaller than the kernel as matrix products.
"""
