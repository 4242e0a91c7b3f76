"""Appearance novelty S_a (ours, not in the paper; docs/method.md §6.1): how unlike every normal
training object an object looks.

Feature of an object: the target frame of its cube (32×32, grey), and that crop's horizontal and
vertical differences, each part centred and scaled to unit length, concatenated and scaled to
unit length (the pixel part). With `hog_weight` w > 0, histograms of gradient orientation join
it: 9 unsigned orientations per 4×4-pixel cell, the square root of each cell's mean gradient
magnitude per orientation, scaled to unit length; the feature is sqrt(1 − w)·pixels ⊕
sqrt(w)·histograms, still of unit length. Pixels compare an object's exact layout; the
histograms compare its edges' directions, place for place, so a shape unlike a walker's (wheels,
a box) stands out even when the crops' brightness patterns overlap. S_a = 1 − mean cosine
similarity to the `k` most similar crops of the bank (the training objects of every training
video outside the validation split).

The flow reconstruction sees only motion, and the frame predictor copies appearance from its
input frames, so neither fails on an object of unseen appearance that moves like a walker
(issue 13's slow cyclist; `tools.pasted_standin`); S_a does, and needs no training.

The training statistics of S_a are those of every training cube scored against the bank with its
own video left out, as a test object is scored against videos it is not part of.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from datasets import CubeSource
from utils.fingerprint import data_section, digest
from utils.io import write_npz

FEATURE_VERSION = 2  # bump when appearance_features changes: cached banks are rebuilt
QUERY_BLOCK = 2048  # queries per similarity block (bounds memory: block x bank floats)
HOG_CELL = 4  # pixels per side of an orientation-histogram cell
HOG_BINS = 9  # unsigned gradient orientations over [0, pi)


def _unit(x: torch.Tensor) -> torch.Tensor:
    x = x.flatten(1)
    x = x - x.mean(dim=1, keepdim=True)
    return x / (x.norm(dim=1, keepdim=True) + 1e-6)


def grey_crops(frames: np.ndarray) -> np.ndarray:
    """RGB crops uint8 [N, H, W, 3] -> grey uint8 [N, H, W] (the mean of the channels)."""
    return np.asarray(frames, dtype=np.float32).mean(axis=-1).round().astype(np.uint8)


def orientation_histograms(grey: torch.Tensor) -> torch.Tensor:
    """Grey crops float [N, H, W] -> float32 [N, HOG_BINS * (H // HOG_CELL) * (W // HOG_CELL)],
    unit length: per cell, the square root of the mean gradient magnitude of each orientation
    (central differences; the outermost rows and columns have no gradient across the border)."""
    gx = F.pad(grey[:, :, 2:] - grey[:, :, :-2], (1, 1))
    gy = F.pad(grey[:, 2:] - grey[:, :-2], (0, 0, 1, 1))
    magnitude = torch.sqrt(gx**2 + gy**2)
    angle = torch.atan2(gy, gx) % np.pi
    bins = (angle * (HOG_BINS / np.pi)).long().clamp_(max=HOG_BINS - 1)
    hist = torch.zeros(grey.shape[0], HOG_BINS, *grey.shape[1:])
    hist.scatter_(1, bins[:, None], magnitude[:, None])
    hist = F.avg_pool2d(hist, HOG_CELL).flatten(1).sqrt()
    return hist / (hist.norm(dim=1, keepdim=True) + 1e-6)


def appearance_features(crops: np.ndarray, hog_weight: float = 0.0) -> torch.Tensor:
    """Grey crops uint8 [N, H, W] -> float32 [N, 3 H W] (pixel part), with `hog_weight` > 0
    [N, 3 H W + HOG_BINS H W / HOG_CELL^2]; unit length."""
    grey = torch.as_tensor(np.asarray(crops)).float()
    dx = torch.diff(grey, dim=2, prepend=grey[:, :, :1])
    dy = torch.diff(grey, dim=1, prepend=grey[:, :1])
    pixels = torch.cat([_unit(grey), _unit(torch.stack([dx, dy], dim=1))], dim=1) / np.sqrt(2.0)
    if hog_weight == 0:
        return pixels
    hog = orientation_histograms(grey)
    return torch.cat([pixels * np.sqrt(1.0 - hog_weight), hog * np.sqrt(hog_weight)], dim=1)


@dataclass
class AppearanceBank:
    """Grey crops [M, H, W] uint8 of the normal training objects and their video numbers [M];
    `k` nearest crops, `hog_weight` of the orientation histograms (see appearance_features)."""

    crops: np.ndarray
    video_idx: np.ndarray
    k: int = 5
    hog_weight: float = 0.0

    def __post_init__(self) -> None:
        if len(self.crops) < self.k:
            raise ValueError(
                f"appearance bank holds {len(self.crops)} training objects, fewer than "
                f"eval.appearance_k={self.k}"
            )
        self._features = appearance_features(self.crops, self.hog_weight)

    def novelty(
        self, crops: np.ndarray, video_idx: np.ndarray | None = None, bf16: bool = False
    ) -> np.ndarray:
        """S_a float64 [N] of grey crops [N, H, W]; with `video_idx` [N], bank objects of a
        query's own video are left out (the training statistics). `bf16`: the similarities in
        bfloat16 (float32 sums; on Ped2 S_a moves by 3e-4 median, 2e-3 at most, and the product
        runs several times faster on a CPU with bf16 matrix units), as scoring in bf16 does."""
        queries = appearance_features(crops, self.hog_weight)
        features = self._features
        if bf16:
            queries, features = queries.bfloat16(), self._bf16_features
        bank_videos = torch.as_tensor(self.video_idx)
        out = []
        for start in range(0, len(queries), QUERY_BLOCK):
            sim = (queries[start : start + QUERY_BLOCK] @ features.T).float()
            if video_idx is not None:
                own = torch.as_tensor(np.asarray(video_idx[start : start + QUERY_BLOCK]))
                sim[own[:, None] == bank_videos[None]] = -2.0
            top = sim.topk(self.k, dim=1).values
            out.append((1.0 - top.mean(dim=1)).double())
        return torch.cat(out).numpy() if out else np.zeros(0)

    @functools.cached_property
    def _bf16_features(self) -> torch.Tensor:
        return self._features.bfloat16()


def bank_identity(
    data_fingerprint: str, val_videos: list[str], k: int, hog_weight: float = 0.0
) -> dict:
    return {
        "data": data_fingerprint,
        "val_videos": sorted(val_videos),
        "k": int(k),
        "hog_weight": float(hog_weight),
        "feature_version": FEATURE_VERSION,
    }


def save_bank(path: Path, bank: AppearanceBank, train_s_a: np.ndarray, identity: dict) -> None:
    """The bank and the S_a of every training cube (training statistics), one .npz."""
    write_npz(
        path,
        crops=bank.crops,
        video_idx=bank.video_idx,
        train_s_a=train_s_a,
        identity=np.array(json.dumps(identity, sort_keys=True)),
    )


def load_bank(path: Path, identity: dict) -> tuple[AppearanceBank, np.ndarray] | None:
    """(bank, training S_a) saved for `identity`, else None (missing, stale or damaged)."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            if str(data["identity"]) != json.dumps(identity, sort_keys=True):
                return None
            bank = AppearanceBank(
                data["crops"], data["video_idx"], identity["k"], identity["hog_weight"]
            )
            return bank, data["train_s_a"]
    except (OSError, ValueError, KeyError, EOFError):
        return None


def build_appearance(cfg) -> tuple[AppearanceBank, np.ndarray]:
    """The run's bank (training videos outside `train.val_videos`) and the S_a of every training
    cube, cached in <run_dir>/appearance_bank.npz (made from the training cubes when missing)."""
    identity = bank_identity(
        digest(data_section(cfg)),
        cfg.train.val_videos,
        cfg.eval.appearance_k,
        cfg.eval.appearance_hog,
    )
    path = Path(cfg.run_dir) / "appearance_bank.npz"
    cached = load_bank(path, identity)
    if cached is not None:
        return cached
    train = CubeSource.from_config(cfg).open(cfg.data.train_split)
    bank, train_s_a = training_bank(
        grey_crops(train.target_frames()),
        np.asarray(train.video_idx),
        train.videos,
        cfg.train.val_videos,
        identity["k"],
        identity["hog_weight"],
    )
    save_bank(path, bank, train_s_a, identity)
    return bank, train_s_a


def training_bank(
    crops: np.ndarray,
    video_idx: np.ndarray,
    videos: list[str],
    val_videos: list[str],
    k: int,
    hog_weight: float,
) -> tuple[AppearanceBank, np.ndarray]:
    """The bank of the training crops [N, H, W] outside the validation videos, and the S_a of
    every training crop with its own video left out (the training statistics' sample)."""
    val = [v for v, name in enumerate(videos) if name in val_videos]
    in_bank = ~np.isin(video_idx, val)
    bank = AppearanceBank(crops[in_bank], video_idx[in_bank], k, hog_weight)
    return bank, bank.novelty(crops, video_idx)
