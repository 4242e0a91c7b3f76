"""Training: the loop, torchrun support, checkpoints, the run-directory layout and the
three stages."""
