"""The PyTorch reference of the original PoolNet, for tests and benchmarks (not shipped).

`torch_poolnet` is the four original models written in PyTorch (torch needed);
`state_dict_*.txt` are the original state_dict contracts (names, order, shapes)
it is built to match. poolnet_jax never imports it. Importable from the
repository root (pytest's `pythonpath`, `python -m bench`).
"""
