"""Local pretrained weights for torchvision models: from a given file or torchvision's cache.

Nothing is ever downloaded (the project runs offline); a missing file fails with a message that
says where the file was looked for and how to get it.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch


def cached_weights_path(weights) -> Path:
    """Where torchvision would cache `weights` (a torchvision `WeightsEnum` member)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(weights.url)


def load_state_dict(weights, path: str | None, key: str) -> dict:
    """The state dict of `weights`, read from `path` or from torchvision's cache.

    `key` is the config key that can name a local file; it appears in the error message.
    """
    file = Path(path) if path else cached_weights_path(weights)
    if not file.is_file():
        raise FileNotFoundError(
            f"pretrained weights not found: {file}. This project never downloads. Download "
            f"{weights.url} on a machine with internet access and either copy it to {file} "
            f"(torchvision's cache) or set {key}=PATH/TO/{os.path.basename(weights.url)}"
        )
    state = torch.load(file, map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise ValueError(f"weights file {file} does not hold a state dict")
    return state
