"""Shared test fixtures."""

from pathlib import Path

import pytest
import torch
from fake_cubes import tiny_overrides

from utils.config import load_config


@pytest.fixture(scope="module")
def one_thread():
    """One CPU thread for a test module: faster for tiny models, and polite on shared machines."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture()
def tiny_cfg(tmp_path):
    """Config factory over tiny cubes: normal objects move slowly, abnormal ones fast."""
    base = tiny_overrides(tmp_path)

    def make(*overrides):
        return load_config(Path("cfgs/ped2.yaml"), base + list(overrides))

    return make
