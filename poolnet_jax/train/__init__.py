"""Training: state and optimizer, losses, the parallel step, checkpoints, the loop."""
