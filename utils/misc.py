"""Seeds, device choice, and rank-0 logging shared by every script."""

from __future__ import annotations

import logging
import os
import random
import sys

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def seed_worker(worker_id: int) -> None:
    """DataLoader `worker_init_fn`: derive numpy/random seeds from torch's per-worker seed."""
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def resolve_device(name: str) -> torch.device:
    """`auto` picks CUDA when available (the local rank's GPU under torchrun), else CPU."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        return torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"config key 'device' is {name!r} but CUDA is not available")
    return device


def is_main_process() -> bool:
    return int(os.environ.get("RANK", 0)) == 0


def get_logger(name: str = "hf2vad") -> logging.Logger:
    """A logger that prints on rank 0 only."""
    logger = logging.getLogger(name)
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
        logger.addHandler(handler)
        logger.propagate = False
    logger.setLevel(logging.INFO if is_main_process() else logging.WARNING)
    return logger
