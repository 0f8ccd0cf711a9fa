"""A trained PoolNet put to use: prediction, evaluation and shipping.

- `predictor`: a model run on images of any size (predict, evaluate and validation);
- `paths`: predict's inputs found from files, folders and globs, its outputs planned;
- `metrics`, `saved_maps`, `reports`, `plots`: the field's measures and their reports;
- `paper`: the paper's table for the authors' checkpoints;
- `artifact`: the saliency function as a portable `jax.export` (or ONNX) artifact.
"""
