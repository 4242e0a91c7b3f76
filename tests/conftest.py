"""Shared test fixtures."""

from pathlib import Path

import pytest
import torch
from fake_cubes import TINY_MODEL, tiny_overrides

from engine.checkpoint import checkpoint_identity, load_checkpoint, save_checkpoint
from models import build_model
from scoring.statistics import ScoringSettings
from utils.config import load_config, save_config
from utils.io import write_json


@pytest.fixture(scope="module")
def one_thread():
    """One CPU thread for a test module: faster for tiny models, and polite on shared machines."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture()
def fast_bf16(monkeypatch):
    """Tests of the bfloat16 settings behave as on a CPU with fast bf16 kernels, whichever CPU
    runs them (elsewhere bf16_cpu falls back to float32: tests/test_speed_equivalence.py)."""
    monkeypatch.setattr("utils.misc.cpu_has_fast_bf16", lambda: True)


@pytest.fixture()
def tiny_cfg(tmp_path):
    """Config factory over tiny cubes: normal objects move slowly, abnormal ones fast."""
    base = tiny_overrides(tmp_path)

    def make(*overrides):
        return load_config(Path("cfgs/ped2.yaml"), base + list(overrides))

    return make


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    """A run directory with an untrained tiny hybrid model and made-up training statistics."""
    root = tmp_path_factory.mktemp("tiny")
    cfg = load_config(
        Path("cfgs/ped2.yaml"),
        TINY_MODEL + [f"run_dir={root / 'run'}", f"data.cache_dir={root / 'cache'}", "device=cpu"],
    )
    torch.manual_seed(0)
    model = build_model(cfg.model)
    path = root / "run" / "stage3" / "best.pth"
    save_checkpoint(path, {"model": model.state_dict(), "epoch": 0, "step": 0}, cfg, "hf2vad")
    save_config(cfg, path.parent / "config.yaml")
    identity = dict(checkpoint_identity(load_checkpoint(path)), deterministic=True)
    stats = {"mean_r": 50.0, "std_r": 40.0, "mean_p": 300.0, "std_p": 100.0, "num_cubes": 1}
    write_json(ScoringSettings().stats_path(path), {**stats, "checkpoint": identity})
    return root / "run"
