"""The training scripts under torchrun: 2 CPU processes, gloo backend, DistributedDataParallel."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from fake_cubes import tiny_overrides

from engine.checkpoint import load_checkpoint

REPO = Path(__file__).resolve().parent.parent


def torchrun(script: str, *args: str) -> subprocess.CompletedProcess:
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        script,
        "--cfg",
        "cfgs/ped2.yaml",
        *args,
    ]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


@pytest.mark.slow  # two torchrun processes
def test_stages_under_torchrun_with_two_cpu_processes(tmp_path):
    overrides = tiny_overrides(tmp_path) + [
        "device=cpu",
        "stage1.num_epochs=1",
        "stage2.num_epochs=1",
    ]
    log = torchrun("ml_memae_sc_train.py", *overrides).stdout
    assert "2 process(es)" in log and log.count("stage1 epoch 1/1") == 1  # rank 0 logs alone
    torchrun("train.py", "--stage", "2", *overrides)
    run = tmp_path / "run"
    for stage, steps in (("stage1", 3), ("stage2", 3)):
        ckpt = load_checkpoint(run / stage / "last.pth")
        # 48 cubes, global batch 16 = 8 per process: 3 steps per epoch, as in one process
        assert ckpt["epoch"] == 1 and ckpt["step"] == steps
        assert all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())
    # resuming under torchrun continues the run
    torchrun("ml_memae_sc_train.py", "--resume", *overrides[:-2], "stage1.num_epochs=2")
    assert load_checkpoint(run / "stage1" / "last.pth")["step"] == 6
