"""Data access: video frames, labels, the synthetic dataset and the cube dataset."""

from datasets.cubes import CubeDataset, CubeSource, WithFlowRecon

__all__ = ["CubeDataset", "CubeSource", "WithFlowRecon"]
