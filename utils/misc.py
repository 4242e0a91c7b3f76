"""Seeds, device choice, rank-0 logging and run bookkeeping shared by every script."""

from __future__ import annotations

import functools
import logging
import os
import random
import subprocess
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


def progress_bars_wanted() -> bool:
    """Progress bars on an interactive terminal only (a log file gets the per-epoch and
    per-step lines, not thousands of bar updates); HF2VAD_QUIET=1 or --quiet turns them off."""
    if os.environ.get("HF2VAD_QUIET", "0") not in ("", "0"):
        return False
    return sys.stderr.isatty()


def progress_bar(iterable=None, disable: bool = False, **kwargs):
    """tqdm, shown only where `progress_bars_wanted` (and not `disable`)."""
    from tqdm import tqdm

    return tqdm(iterable, disable=disable or not progress_bars_wanted(), **kwargs)


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


def dtype_name(dtype: torch.dtype | None) -> str:
    """'bfloat16', 'float16', ...; None (no autocast) is 'float32'."""
    return str(dtype or torch.float32).removeprefix("torch.")


@functools.cache
def cpu_has_fast_bf16() -> bool:
    """Whether oneDNN has bfloat16 kernels for this CPU (x86 with AVX-512 or AMX, Arm with bf16).
    Elsewhere bf16 autocast is emulated and far slower than float32: a stage-1 training step took
    70 s against 1.9 s in float32 on an AVX2-only AMD EPYC (2 threads, batch 64;
    bench/results/bench_training_stage1_avx2.json)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a build without oneDNN
        return False


def use_cpu_bf16(requested: bool, key: str) -> bool:
    """A config's bf16_cpu (`key` names it) as it is run: float32 where the CPU has no fast
    bfloat16 kernels, said once per key."""
    if requested and not cpu_has_fast_bf16():
        _say_bf16_ignored(key)
        return False
    return requested


@functools.cache
def _say_bf16_ignored(key: str) -> None:
    get_logger().warning(
        f"{key}=true: this CPU ({torch.backends.cpu.get_cpu_capability()}) has no fast bfloat16 "
        "kernels, so it runs in float32 (emulated bfloat16 is many times slower)"
    )


@functools.cache
def git_commit() -> str:
    """The repository's HEAD commit, with '+changes' when the tree differs; '' outside git.
    Read once per process (call it at start: the code that runs is the code of that moment)."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "-uno"], capture_output=True)
    except OSError:
        return ""
    commit = head.stdout.decode().strip()
    return commit + ("+changes" if commit and dirty.stdout.strip() else "")


def set_cpu_threads(threads: int) -> None:
    """Use `threads` CPU threads in torch (train.cpu_threads; 0 keeps torch's default)."""
    if threads > 0:
        torch.set_num_threads(threads)
