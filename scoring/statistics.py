"""Object errors of a run's model, shared by eval.py, detect.py and run_pipeline.py: the
training statistics (mean and std of S_r, S_p and S_kl over all training cubes) with the
per-object training errors, cached beside the checkpoint and tied to the ScoringSettings they
were made with."""

from __future__ import annotations

import json
import time
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from engine.checkpoint import checkpoint_identity
from models import ObjectErrors, object_scores
from pre_process.boxes import touches_border
from scoring.frame_scores import border_statistics, check_finite
from scoring.weights import ScoreSet
from utils.io import read_json, write_json, write_npz
from utils.misc import dtype_name, get_logger, progress_bar, seed_everything, use_cpu_bf16

STAT_KEYS = ("mean_r", "std_r", "mean_p", "std_p")
DIVERGENCE_KEYS = ("mean_kl", "std_kl")  # written since S_kl exists (older files lack them)
SAVED_STAT_KEYS = STAT_KEYS + ("mean_a", "std_a") + DIVERGENCE_KEYS  # what outputs record


def scoring_dtype(bf16_cpu: bool, amp: bool, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for scoring: bfloat16 on CPU with `bf16_cpu` (eval.bf16_cpu) where the
    CPU has fast bfloat16 kernels, float16 on CUDA with `amp` (eval.amp), else None (float32)."""
    if device.type == "cpu" and use_cpu_bf16(bf16_cpu, "eval.bf16_cpu"):
        return torch.bfloat16
    if device.type == "cuda" and amp:
        return torch.float16
    return None


@dataclass(frozen=True)
class ScoringSettings:
    """What a checkpoint's object scores depend on besides its weights and the cubes, and how
    they are computed: test mode, seed (sampled latents), precision, backend, batches; and
    whether the scores need S_kl (`divergence`: cached statistics written before S_kl existed
    serve every other score)."""

    deterministic: bool = True
    seed: int = 0
    precision: torch.dtype | None = None  # autocast dtype (None: float32)
    backend: str = "torch"
    batch_size: int = 256
    num_workers: int = 0
    divergence: bool = False

    @classmethod
    def from_config(cls, cfg, device: torch.device) -> ScoringSettings:
        return cls(
            deterministic=bool(cfg.model.deterministic),
            seed=int(cfg.seed),
            precision=scoring_dtype(bool(cfg.eval.bf16_cpu), bool(cfg.eval.amp), device),
            backend=cfg.eval.backend,
            batch_size=int(cfg.eval.batch_size),
            num_workers=int(cfg.eval.num_workers),
            divergence=ScoreSet.from_config(cfg).uses_divergence,
        )

    def identity(self, ckpt: dict) -> dict:
        """What training statistics record to know what they belong to: the checkpoint, the
        test-mode setting (and seed when sampling) and, when not float32, the precision and
        backend (in float32 the exported graph's scores equal PyTorch's to ~1e-6, so its
        statistics are shared)."""
        identity = dict(checkpoint_identity(ckpt), deterministic=self.deterministic)
        if not self.deterministic:  # sampled latents: the seed picks the samples
            identity["seed"] = self.seed
        return dict(identity, **self._precision_identity())

    def _precision_identity(self) -> dict:
        if self.precision is None:
            return {}
        precision = {"precision": dtype_name(self.precision)}
        if self.backend != "torch":
            precision["backend"] = self.backend
        return precision

    def stats_path(self, ckpt_path: Path, kind: str = "train_stats.json") -> Path:
        """Beside the checkpoint, one file per kind of statistics, so that scoring in another
        precision does not overwrite them: sampled latents per seed, low precision per dtype
        and backend (float32 backends share PyTorch's float32 files)."""
        variant = "" if self.deterministic else f".sampled_seed{self.seed}"
        variant += "".join(f".{value}" for value in self._precision_identity().values())
        name, ext = kind.rsplit(".", 1)
        return ckpt_path.with_name(f"{ckpt_path.stem}.{name}{variant}.{ext}")


@torch.inference_mode()
def object_errors(model, batches: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> ObjectErrors:
    """(S_r, S_p, S_kl) as float64 numpy [N] each, of (frames, flows) batches on the model's
    device, concatenated in order."""
    parts = [[e.double().cpu().numpy() for e in object_scores(model(*b))] for b in batches]
    if not parts:
        return ObjectErrors(np.zeros(0), np.zeros(0), np.zeros(0))
    return ObjectErrors(*(np.concatenate(column) for column in zip(*parts)))


def collect_object_scores(
    model, dataset, batch_size: int, num_workers: int, device, desc: str
) -> ObjectErrors:
    """(S_r, S_p, S_kl) of every cube of `dataset` in test mode, float64 [N] each."""
    model.eval()
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    batches = progress_bar(loader, desc=desc, leave=False, dynamic_ncols=True)
    return object_errors(model, ((b["frames"].to(device), b["flows"].to(device)) for b in batches))


OBJECT_KEYS = ("s_r", "s_p", "video_idx", "frame_idx", "num_frames", "boxes", "frame_size")


def _training_pass(
    settings: ScoringSettings, model, dataset, ckpt: dict, ckpt_path: Path, device
) -> tuple[dict, dict]:
    """Score every training cube once; cache the statistics (JSON) and, for thresholds at a
    false-alarm rate, the per-object errors (<ckpt>.train_object_scores.npz)."""
    identity = settings.identity(ckpt)
    tic = time.time()
    seed_everything(settings.seed)
    s_r, s_p, s_kl = collect_object_scores(
        model, dataset, settings.batch_size, settings.num_workers, device, "training statistics"
    )
    # before anything is cached: a NaN here would poison the statistics for good
    where = (dataset.video_idx, dataset.frame_idx, dataset.videos, "training cubes")
    check_finite(s_r, s_p, *where, s_kl=s_kl)
    objects = {
        "s_r": s_r,
        "s_p": s_p,
        "s_kl": s_kl,
        "video_idx": np.asarray(dataset.video_idx, np.int64),
        "frame_idx": np.asarray(dataset.frame_idx, np.int64),
        "num_frames": np.asarray(dataset.num_frames, np.int64),
        "boxes": np.asarray(dataset.boxes, np.float64),
        "frame_size": np.asarray(dataset.manifest["frame_size"], np.int64),
    }
    identity_text = np.array(json.dumps(identity, sort_keys=True))
    write_npz(
        settings.stats_path(ckpt_path, "train_object_scores.npz"),
        identity=identity_text,
        **objects,
    )
    stats = {
        "seconds": round(time.time() - tic, 1),
        "mean_r": float(s_r.mean()),
        "std_r": float(s_r.std()),
        "mean_p": float(s_p.mean()),
        "std_p": float(s_p.std()),
        "mean_kl": float(s_kl.mean()),
        "std_kl": float(s_kl.std()),
        "num_cubes": len(dataset),
        "checkpoint": identity,
    }
    write_json(settings.stats_path(ckpt_path), stats)
    return stats, objects


def cached_statistics(settings: ScoringSettings, ckpt: dict, ckpt_path: Path) -> dict | None:
    """The training statistics cached for this checkpoint, test mode and precision (marked
    `cached`), else None."""
    path = settings.stats_path(ckpt_path)
    if not path.is_file():
        return None
    try:
        stored = read_json(path)
    except ValueError as err:
        get_logger().warning(f"{err}; recomputing the training statistics")
        return None
    if stored.get("checkpoint") != settings.identity(ckpt):
        get_logger().info(f"{path} belongs to another checkpoint or test mode")
        return None
    needed = STAT_KEYS + DIVERGENCE_KEYS * settings.divergence
    if settings.divergence and any(k not in stored for k in DIVERGENCE_KEYS):
        get_logger().info(f"{path} was written before S_kl existed; recomputing it")
        return None
    if not all(np.isfinite(float(stored.get(k, np.nan))) for k in needed):
        get_logger().warning(f"{path} holds non-finite statistics; recomputing them")
        return None
    return dict(stored, cached=True)


def training_statistics(
    settings: ScoringSettings, model, training_cubes, ckpt: dict, ckpt_path: Path, device
) -> dict:
    """Mean and std of S_r, S_p and S_kl over all training cubes (`training_cubes()` opens them) for
    this checkpoint (cached as JSON; the returned dict says whether it was `cached`).

    A cached file made for another checkpoint, test-mode setting or precision is recomputed.
    """
    cached = cached_statistics(settings, ckpt, ckpt_path)
    if cached is not None:
        return cached
    stats, _ = _training_pass(settings, model, training_cubes(), ckpt, ckpt_path, device)
    return dict(stats, cached=False)


def cached_object_errors(settings: ScoringSettings, ckpt: dict, ckpt_path: Path) -> dict | None:
    """The per-object training errors cached for this checkpoint and test mode, else None (also
    for a truncated or damaged file, which is then recomputed by the caller)."""
    path = settings.stats_path(ckpt_path, "train_object_scores.npz")
    if not path.is_file():
        return None
    identity = json.dumps(settings.identity(ckpt), sort_keys=True)
    try:
        with np.load(path, allow_pickle=False) as data:
            keys = OBJECT_KEYS + ("s_kl",) * settings.divergence
            if str(data["identity"]) != identity or any(k not in data for k in keys):
                return None  # another checkpoint, or written before boxes (or S_kl) were kept
            return {k: data[k] for k in OBJECT_KEYS + ("s_kl",) if k in data}
    except (zipfile.BadZipFile, EOFError, ValueError, OSError, KeyError) as err:
        get_logger().warning(f"{path} is truncated or damaged ({err}); recomputing it")
        return None


def training_object_errors(
    settings: ScoringSettings, model, training_cubes, ckpt: dict, ckpt_path: Path, device
) -> dict:
    """S_r, S_p, S_kl, video_idx, frame_idx of every training cube and num_frames per video,
    from the cache that the training statistics wrote (one more pass over `training_cubes()`
    when it is missing or stale)."""
    cached = cached_object_errors(settings, ckpt, ckpt_path)
    if cached is not None:
        return cached
    return _training_pass(settings, model, training_cubes(), ckpt, ckpt_path, device)[1]


def border_groups(objects: dict, margin: float, s_a: np.ndarray | None = None) -> dict:
    """Score statistics of the training objects cut by the image border (within `margin`
    pixels) and of the others, from the per-object training errors (and their S_a)."""
    border = touches_border(objects["boxes"], objects["frame_size"], margin)
    return border_statistics(
        objects["s_r"], objects["s_p"], border, margin, s_a, objects.get("s_kl")
    )
