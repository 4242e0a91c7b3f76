"""A trained run ready to score new footage: its config, model in test mode, training statistics
and pre-processing tools (used by utils.detect)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from datasets.cubes import cube_dir
from models import build_model
from pre_process.boxes import BoxExtractor
from pre_process.flow import build_flow_estimator
from utils.checkpoint import load_checkpoint, restore_model
from utils.config import Config, load_config
from utils.misc import resolve_device
from utils.object_errors import (
    border_groups,
    cached_object_errors,
    cached_statistics,
    eval_checkpoint_path,
    prepare_scoring_model,
    primary_score,
    score_weights,
    stats_path,
    training_object_errors,
    training_statistics,
)
from utils.scoring import empty_frame_score, fuse_scores, touches_border

CONFIG_CANDIDATES = (
    "config.yaml",
    "eval/config.yaml",
    "stage3/config.yaml",
    "stage2/config.yaml",
    "stage1/config.yaml",
)


class DetectError(ValueError):
    """An input, run directory or option that detect cannot use; the message names it."""


@dataclass
class Detector:
    """A trained run ready to score: config, model in test mode, training statistics, tools."""

    cfg: Config
    model: torch.nn.Module
    stats: dict
    ckpt: dict
    ckpt_path: Path
    device: torch.device
    boxes: BoxExtractor
    flow: object

    @property
    def weights(self) -> tuple[float, float]:
        """(w_r, w_p) of eval.py's main score (a missing branch has weight 0)."""
        return score_weights(self.cfg)[primary_score(self.cfg)]

    def fuse(self, s_r: np.ndarray, s_p: np.ndarray, boxes=None, frame_size=None) -> np.ndarray:
        """Fused object scores; with eval.border_stats, `boxes` [N, 4] and the frame size
        (height, width) say which objects are cut by the image border."""
        border = None
        if self.cfg.eval.border_stats:
            border = touches_border(boxes, frame_size, self.cfg.eval.border_margin)
        return fuse_scores(s_r, s_p, self.stats, *self.weights, border=border)

    @property
    def empty_score(self) -> float:
        return empty_frame_score(self.stats, *self.weights, grouped=self.cfg.eval.border_stats)


def run_config_path(run_dir: Path) -> Path:
    """The saved config of a run directory (see CONFIG_CANDIDATES)."""
    if not run_dir.is_dir():
        raise DetectError(f"run directory not found: {run_dir}")
    for name in CONFIG_CANDIDATES:
        if (run_dir / name).is_file():
            return run_dir / name
    raise DetectError(
        f"{run_dir} is not a training run directory: none of {', '.join(CONFIG_CANDIDATES)} "
        f"exists (train one with: python run_pipeline.py --cfg <config>)"
    )


def load_run(run_dir: str | Path, overrides: Iterable[str] = (), device: str | None = None):
    """(config, trained model, checkpoint, checkpoint path) of a run directory; `overrides` are
    dotted key=value settings on top of the saved config (settings the checkpoint depends on
    are checked against it)."""
    run_dir = Path(run_dir)
    cfg = load_config(run_config_path(run_dir), overrides)
    cfg.run_dir = str(run_dir)  # the folder may have moved since training
    if device is not None:
        cfg.device = device
    ckpt_path = eval_checkpoint_path(cfg)
    if not ckpt_path.is_file():
        raise DetectError(
            f"run directory {run_dir} has no trained model: {ckpt_path} is missing "
            f"(eval.checkpoint={cfg.eval.checkpoint}; finish training with "
            f"python run_pipeline.py --cfg {run_config_path(run_dir)})"
        )
    ckpt = load_checkpoint(ckpt_path, cfg, map_location=resolve_device(cfg.device))
    model = build_model(cfg.model)
    restore_model(model, ckpt, ckpt_path)
    return cfg, model, ckpt, ckpt_path


def load_detector(run_dir: str | Path, overrides: Iterable[str] = (), device: str | None = None):
    """The run's model, statistics and pre-processing tools (see load_run for `overrides`;
    eval.* settings for instance)."""
    cfg, model, ckpt, ckpt_path = load_run(run_dir, overrides, device)
    device = resolve_device(cfg.device)
    model = prepare_scoring_model(cfg, model, device)
    stats = _training_stats(cfg, model, ckpt, ckpt_path, device)
    if cfg.eval.border_stats:
        stats = dict(stats, groups=_border_groups(cfg, model, ckpt, ckpt_path, device))
    boxes = BoxExtractor(cfg.preprocess.boxes, device)
    flow = build_flow_estimator(cfg.preprocess.flow, device)
    return Detector(cfg, model, stats, ckpt, ckpt_path, device, boxes, flow)


def has_training_cubes(cfg) -> bool:
    return (cube_dir(cfg, cfg.data.train_split) / "manifest.json").is_file()


def _training_stats(cfg, model, ckpt, ckpt_path: Path, device) -> dict:
    """The saved training statistics of the checkpoint; computed when missing and possible."""
    stats = cached_statistics(cfg, ckpt, ckpt_path, device)
    if stats is not None:
        return stats
    if has_training_cubes(cfg):
        return training_statistics(cfg, model, ckpt, ckpt_path, device)
    raise DetectError(
        f"no training statistics for {ckpt_path}: {stats_path(cfg, ckpt_path)} is missing or "
        f"belongs to another checkpoint, and the training cubes to compute them are not in "
        f"{cube_dir(cfg, cfg.data.train_split)} (run eval.py on the run first)"
    )


def _border_groups(cfg, model, ckpt, ckpt_path: Path, device) -> dict:
    """Per-group training statistics (eval.border_stats) from the cached per-object training
    errors, or from the training cubes."""
    objects = cached_object_errors(cfg, ckpt, ckpt_path, device)
    if objects is None and has_training_cubes(cfg):
        objects = training_object_errors(cfg, model, ckpt, ckpt_path, device)
    if objects is None:
        raise DetectError(
            f"eval.border_stats needs the per-object training errors of {ckpt_path} "
            f"({stats_path(cfg, ckpt_path, 'train_object_scores.npz')}) or the training cubes; "
            "run eval.py on the run first, or pass --set eval.border_stats=false"
        )
    return border_groups(objects, cfg.eval.border_margin)
