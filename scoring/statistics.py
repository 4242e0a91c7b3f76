"""Object errors of a run's model, shared by eval.py, detect.py and run_pipeline.py: which
checkpoint and stages a config means, the scoring model, and the training statistics (mean and std
of S_r and S_p over all training cubes) with the per-object training errors, cached beside the
checkpoint."""

from __future__ import annotations

import json
import time
import zipfile
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from datasets import open_cubes
from engine.checkpoint import checkpoint_identity
from models import object_scores
from scoring.frame_scores import border_statistics, check_finite, touches_border
from utils.io import read_json, write_json, write_npz
from utils.misc import get_logger, progress_bar, resolve_device, seed_everything

STAT_KEYS = ("mean_r", "std_r", "mean_p", "std_p")


def scoring_dtype(cfg, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for scoring: bfloat16 on CPU with eval.bf16_cpu, float16 on CUDA with
    eval.amp, else None (float32)."""
    if device.type == "cpu" and cfg.eval.bf16_cpu:
        return torch.bfloat16
    if device.type == "cuda" and cfg.eval.amp:
        return torch.float16
    return None


def stats_identity(cfg, ckpt: dict, device: torch.device) -> dict:
    """What training statistics depend on: the checkpoint, the test-mode setting (and seed when
    sampling) and, when not float32, the scoring precision and backend (eval.backend: in float32
    the exported graph's scores equal PyTorch's to ~1e-6, so its statistics are shared)."""
    identity = dict(checkpoint_identity(ckpt), deterministic=bool(cfg.model.deterministic))
    if not cfg.model.deterministic:  # sampled latents: the seed picks the samples
        identity["seed"] = cfg.seed
    return dict(identity, **_precision_identity(cfg, device))


def _precision_identity(cfg, device: torch.device | None = None) -> dict:
    dtype = scoring_dtype(cfg, device or resolve_device(cfg.device))
    if dtype is None:
        return {}
    if cfg.eval.backend != "torch":
        return {"precision": str(dtype).removeprefix("torch."), "backend": cfg.eval.backend}
    return {"precision": str(dtype).removeprefix("torch.")}


@torch.inference_mode()
def collect_object_scores(
    model, dataset, batch_size: int, num_workers: int, device, desc: str
) -> tuple[np.ndarray, np.ndarray]:
    """(S_r, S_p) of every cube of `dataset` in test mode, float64 [N] each."""
    model.eval()
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    s_r, s_p = [], []
    for batch in progress_bar(loader, desc=desc, leave=False, dynamic_ncols=True):
        out = model(batch["frames"].to(device), batch["flows"].to(device))
        r, p = object_scores(out)
        s_r.append(r.double().cpu().numpy())
        s_p.append(p.double().cpu().numpy())
    if not s_r:
        return np.zeros(0), np.zeros(0)
    return np.concatenate(s_r), np.concatenate(s_p)


def stats_path(cfg, ckpt_path: Path, kind: str = "train_stats.json") -> Path:
    """Beside the checkpoint; sampled latents (one file per seed) apart from the posterior mean,
    and a backend's own low-precision statistics apart from PyTorch's (see stats_identity)."""
    variant = "" if cfg.model.deterministic else f".sampled_seed{cfg.seed}"
    if "backend" in _precision_identity(cfg):
        variant += f".{cfg.eval.backend}"
    name, ext = kind.rsplit(".", 1)
    return ckpt_path.with_name(f"{ckpt_path.stem}.{name}{variant}.{ext}")


OBJECT_KEYS = ("s_r", "s_p", "video_idx", "frame_idx", "num_frames", "boxes", "frame_size")


def _training_pass(cfg, model, identity: dict, ckpt_path: Path, device) -> tuple[dict, dict]:
    """Score every training cube once; cache the statistics (JSON) and, for thresholds at a
    false-alarm rate, the per-object errors (<ckpt>.train_object_scores.npz)."""
    dataset = open_cubes(cfg, cfg.data.train_split)
    tic = time.time()
    seed_everything(cfg.seed)
    s_r, s_p = collect_object_scores(
        model, dataset, cfg.eval.batch_size, cfg.eval.num_workers, device, "training statistics"
    )
    # before anything is cached: a NaN here would poison the statistics for good
    check_finite(s_r, s_p, dataset.video_idx, dataset.frame_idx, dataset.videos, "training cubes")
    objects = {
        "s_r": s_r,
        "s_p": s_p,
        "video_idx": np.asarray(dataset.video_idx, np.int64),
        "frame_idx": np.asarray(dataset.frame_idx, np.int64),
        "num_frames": np.asarray(dataset.num_frames, np.int64),
        "boxes": np.asarray(dataset.boxes, np.float64),
        "frame_size": np.asarray(dataset.manifest["frame_size"], np.int64),
    }
    identity_text = np.array(json.dumps(identity, sort_keys=True))
    write_npz(
        stats_path(cfg, ckpt_path, "train_object_scores.npz"), identity=identity_text, **objects
    )
    stats = {
        "seconds": round(time.time() - tic, 1),
        "mean_r": float(s_r.mean()),
        "std_r": float(s_r.std()),
        "mean_p": float(s_p.mean()),
        "std_p": float(s_p.std()),
        "num_cubes": len(dataset),
        "checkpoint": identity,
    }
    write_json(stats_path(cfg, ckpt_path), stats)
    return stats, objects


def cached_statistics(cfg, ckpt: dict, ckpt_path: Path, device) -> dict | None:
    """The training statistics cached for this checkpoint, test mode and precision (marked
    `cached`), else None."""
    path = stats_path(cfg, ckpt_path)
    if not path.is_file():
        return None
    try:
        stored = read_json(path)
    except ValueError as err:
        get_logger().warning(f"{err}; recomputing the training statistics")
        return None
    if stored.get("checkpoint") != stats_identity(cfg, ckpt, device):
        get_logger().info(f"{path} belongs to another checkpoint or test mode")
        return None
    if not all(np.isfinite(float(stored.get(k, np.nan))) for k in STAT_KEYS):
        get_logger().warning(f"{path} holds non-finite statistics; recomputing them")
        return None
    return dict(stored, cached=True)


def training_statistics(cfg, model, ckpt: dict, ckpt_path: Path, device) -> dict:
    """Mean and std of S_r and S_p over all training cubes for this checkpoint (cached as JSON;
    the returned dict says whether it was `cached`).

    A cached file made for another checkpoint, test-mode setting or precision is recomputed.
    """
    cached = cached_statistics(cfg, ckpt, ckpt_path, device)
    if cached is not None:
        return cached
    stats, _ = _training_pass(cfg, model, stats_identity(cfg, ckpt, device), ckpt_path, device)
    return dict(stats, cached=False)


def cached_object_errors(cfg, ckpt: dict, ckpt_path: Path, device) -> dict | None:
    """The per-object training errors cached for this checkpoint and test mode, else None (also
    for a truncated or damaged file, which is then recomputed by the caller)."""
    path = stats_path(cfg, ckpt_path, "train_object_scores.npz")
    if not path.is_file():
        return None
    identity = json.dumps(stats_identity(cfg, ckpt, device), sort_keys=True)
    try:
        with np.load(path, allow_pickle=False) as data:
            if str(data["identity"]) != identity or any(k not in data for k in OBJECT_KEYS):
                return None  # another checkpoint, or written before boxes were kept
            return {k: data[k] for k in OBJECT_KEYS}
    except (zipfile.BadZipFile, EOFError, ValueError, OSError, KeyError) as err:
        get_logger().warning(f"{path} is truncated or damaged ({err}); recomputing it")
        return None


def training_object_errors(cfg, model, ckpt: dict, ckpt_path: Path, device) -> dict:
    """S_r, S_p, video_idx, frame_idx of every training cube and num_frames per video, from the
    cache that the training statistics wrote (one more pass when it is missing or stale)."""
    cached = cached_object_errors(cfg, ckpt, ckpt_path, device)
    if cached is not None:
        return cached
    identity = stats_identity(cfg, ckpt, device)
    return _training_pass(cfg, model, identity, ckpt_path, device)[1]


def border_groups(objects: dict, margin: float, s_a: np.ndarray | None = None) -> dict:
    """Score statistics of the training objects cut by the image border (within `margin`
    pixels) and of the others, from the per-object training errors (and their S_a)."""
    border = touches_border(objects["boxes"], objects["frame_size"], margin)
    return border_statistics(objects["s_r"], objects["s_p"], border, margin, s_a)
