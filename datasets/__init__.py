"""Data access: video frames, labels, the synthetic dataset and the cube dataset."""

from datasets.cubes import CubeDataset, cube_dir, open_cubes

__all__ = ["CubeDataset", "cube_dir", "open_cubes"]
