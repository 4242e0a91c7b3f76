"""Data access: video frames, labels, the synthetic dataset and the cube dataset."""

from datasets.cubes import CubeDataset, WithFlowRecon, cube_dir, open_cubes, train_val_cubes

__all__ = ["CubeDataset", "WithFlowRecon", "cube_dir", "open_cubes", "train_val_cubes"]
