"""Side-by-side benchmarks of poolnet-jax against the PyTorch reference (reference/).

`python -m bench --quick` (about 4 minutes on a 2-core CPU) or `python -m bench`
(everything; see BENCHMARKS.md). Each framework runs in its own worker process
(bench/worker.py), both pinned to the same cores with the same thread count, on
the same weights and inputs; the driver alternates their runs and takes medians.
`python -m bench.accelerator` does the same on a GPU (bench/accelerator_worker.py);
both stand on bench/harness.py.
"""
