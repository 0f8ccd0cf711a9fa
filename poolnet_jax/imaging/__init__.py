"""Image arithmetic: the network's input and output conventions, bilinear resizing and
torch-exact pooling, and the CPU convolution kernels (`kernels/`); pure functions, no Flax.

- `image`: preprocessing (BGR minus the mean) and the 8-bit saliency map;
- `resize`: each bilinear rule once (torch align_corners, OpenCV half-pixel) and run sizes;
- `ops`: torch-exact resize and pooling for NHWC arrays.
"""
