"""Frame-level anomaly scores and AUROC with the paper's protocol (docs/method.md §6).

Object scores S_r (flow reconstruction error) and S_p (frame prediction error), and optionally the
appearance novelty S_a (scoring/appearance.py) and the CVAE's latent divergence S_kl
(models/losses.py), are z-normalised with training statistics and fused; a frame's score is the
maximum over *all* its objects; a frame without objects gets the score of a zero-error object; the
first `drop_first` frames of each video are not scored (NaN here, null in JSON); the rest is
smoothed per video. Micro AUROC concatenates all labelled videos, macro AUROC averages the
per-video AUROCs of videos holding both classes.

Median smoothing: `medfilt` is the authors' protocol, `scipy.signal.medfilt` (the window is
zero-padded at both ends of a video's scored frames), the default of the paper configs; `median`
repeats the edge score instead (`scipy.ndimage.median_filter(mode="nearest")`), so the first and
last frames are not pulled towards zero, the z-normalised mean of a training object.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter1d, median_filter
from sklearn.metrics import roc_auc_score

from scoring.tracks import TrackSmoothing

SMOOTHING_MODES = ("medfilt", "median", "gaussian", "none")
OPTIONAL_SCORES = {"a": "the appearance novelty S_a", "kl": "the latent divergence S_kl"}


def check_finite(
    s_r: np.ndarray,
    s_p: np.ndarray,
    video_idx,
    frame_idx,
    videos: Sequence[str],
    source: str,
    s_kl: np.ndarray | None = None,
) -> None:
    """A NaN or infinite object error (S_r, S_p, or S_kl when given) is an error naming the
    video, frame and object (a frame score built from it would silently leave the ROC)."""
    s_kl = np.zeros_like(s_r) if s_kl is None else s_kl
    bad = np.flatnonzero(~(np.isfinite(s_r) & np.isfinite(s_p) & np.isfinite(s_kl)))
    if bad.size:
        i = int(bad[0])
        video = videos[int(video_idx[i])]
        same_frame = (np.asarray(video_idx) == video_idx[i]) & (
            np.asarray(frame_idx) == frame_idx[i]
        )
        k = int(np.flatnonzero(same_frame).tolist().index(i))
        raise ValueError(
            f"{source}: non-finite object error (S_r {s_r[i]}, S_p {s_p[i]}, S_kl {s_kl[i]}) in "
            f"video {video}, "
            f"frame {int(frame_idx[i])}, object {k} of that frame ({bad.size} such object(s) in "
            "all); check that frame's cube (its flows or frames) or the model"
        )


def score_statistics(s_r: np.ndarray, s_p: np.ndarray, s_a=None, s_kl=None) -> dict[str, float]:
    """Mean and standard deviation of S_r and S_p (and S_a, S_kl when given) over training
    cubes."""
    s_r, s_p = np.asarray(s_r, dtype=np.float64), np.asarray(s_p, dtype=np.float64)
    if len(s_r) < 2:
        raise ValueError(f"{len(s_r)} training cube(s): too few for score statistics")
    stats = {
        "mean_r": float(s_r.mean()),
        "std_r": float(s_r.std()),
        "mean_p": float(s_p.mean()),
        "std_p": float(s_p.std()),
        "num_cubes": len(s_r),
    }
    for key, values in (("a", s_a), ("kl", s_kl)):
        if values is not None:
            values = np.asarray(values, dtype=np.float64)
            stats.update({f"mean_{key}": float(values.mean()), f"std_{key}": float(values.std())})
    return stats


def border_statistics(s_r, s_p, border: np.ndarray, margin: float, s_a=None, s_kl=None) -> dict:
    """Score statistics of the training cubes cut by the image border and of the others."""
    border = np.asarray(border, dtype=bool)

    def part(mask, name):
        optional = [None if s is None else np.asarray(s)[mask] for s in (s_a, s_kl)]
        try:
            return score_statistics(s_r[mask], s_p[mask], *optional)
        except ValueError as err:
            raise ValueError(
                f"{err} in the {name} group of eval.border_stats (set it false)"
            ) from None

    return {
        "margin": margin,
        "border": part(border, "border"),
        "interior": part(~border, "interior"),
    }


def fuse_scores(
    s_r: np.ndarray,
    s_p: np.ndarray,
    stats: Mapping,
    w_r: float,
    w_p: float,
    border: np.ndarray | None = None,
    s_a: np.ndarray | None = None,
    w_a: float = 0.0,
    s_kl: np.ndarray | None = None,
    w_kl: float = 0.0,
) -> np.ndarray:
    """S = w_r (S_r - mu_r) / sigma_r + w_p (S_p - mu_p) / sigma_p [+ w_a (S_a - mu_a) / sigma_a]
    [+ w_kl (S_kl - mu_kl) / sigma_kl]; a zero weight skips its term (S_a, the appearance
    novelty, and S_kl, the latent divergence, are needed only with a non-zero weight).

    `stats` holds `mean_r`, `std_r`, `mean_p`, `std_p` (training cubes). A term with a non-zero
    weight and a zero standard deviation is an error (the branch gives no information).
    With `border` (bool per object, `pre_process.boxes.touches_border`), objects cut by the
    image border are normalised with `stats["groups"]["border"]`, the others with
    `stats["groups"]["interior"]` (see `border_statistics`): a partly visible object is compared
    with partly visible training objects, whose errors run higher.
    """
    if border is not None:
        groups = stats["groups"]
        border = np.broadcast_to(np.asarray(border, dtype=bool), np.broadcast(s_r, s_p).shape)
        extra = dict(s_a=s_a, w_a=w_a, s_kl=s_kl, w_kl=w_kl)
        inner = fuse_scores(s_r, s_p, groups["interior"], w_r, w_p, **extra)
        outer = fuse_scores(s_r, s_p, groups["border"], w_r, w_p, **extra)
        return np.where(border, outer, inner)
    fused = np.zeros(np.broadcast(s_r, s_p).shape, dtype=np.float64)
    terms = ((w_r, s_r, "r"), (w_p, s_p, "p"), (w_a, s_a, "a"), (w_kl, s_kl, "kl"))
    for weight, values, key in terms:
        if weight == 0:
            continue
        if values is None or f"std_{key}" not in stats:
            raise ValueError(
                f"eval.w_{key} is {weight} but {OPTIONAL_SCORES.get(key, f'S_{key}')} or its "
                "training "
                "statistics are missing (evaluate again without --rescore)"
            )
        std = float(stats[f"std_{key}"])
        if not std > 0:
            raise ValueError(
                f"training statistic std_{key} is {std}: S_{key} is constant on the training "
                f"cubes, so it cannot be z-normalised; set its weight (eval.w_{key}) to 0"
            )
        fused += weight * (np.asarray(values, dtype=np.float64) - float(stats[f"mean_{key}"])) / std
    return fused


def empty_frame_score(
    stats: Mapping,
    w_r: float,
    w_p: float,
    grouped: bool = False,
    w_a: float = 0.0,
    w_kl: float = 0.0,
) -> float:
    """The fused score of an object whose errors are all zero (used for frames without objects);
    `grouped`: with the interior objects' statistics (see `fuse_scores`)."""
    if grouped:
        stats = stats["groups"]["interior"]
    zero = np.zeros(1)
    fused = fuse_scores(zero, zero, stats, w_r, w_p, s_a=zero, w_a=w_a, s_kl=zero, w_kl=w_kl)
    return float(fused[0])


def frame_max_scores(
    object_scores: np.ndarray,
    video_idx: np.ndarray,
    frame_idx: np.ndarray,
    num_frames: Sequence[int],
    empty_score: float,
) -> list[np.ndarray]:
    """Per video, the maximum object score of every frame; frames without objects get `empty_score`.

    object_scores, video_idx, frame_idx: [N] (one entry per object). Returns one float64 array of
    length num_frames[v] per video.
    """
    frames = [np.full(int(n), -np.inf) for n in num_frames]
    for v, scores in enumerate(frames):
        in_video = video_idx == v
        idx = frame_idx[in_video]
        if idx.size and (idx.min() < 0 or idx.max() >= len(scores)):
            raise ValueError(f"video {v}: object frame index outside [0, {len(scores)})")
        # np.maximum.at is unbuffered: every object of a frame counts, whatever its position.
        np.maximum.at(scores, idx, object_scores[in_video].astype(np.float64))
        scores[np.isneginf(scores)] = empty_score
    return frames


def drop_first_frames(scores: np.ndarray, drop_first: int) -> np.ndarray:
    """A copy with the first `drop_first` frames set to NaN (not scored)."""
    out = np.array(scores, dtype=np.float64, copy=True)
    out[:drop_first] = np.nan
    return out


def smooth(scores: np.ndarray, mode: str, window: int = 17, sigma: float = 3.0) -> np.ndarray:
    """Smooth the scored (finite) frames of one video; NaN frames stay NaN.

    The scored frames of a video are contiguous (only its start is dropped).
    """
    if mode not in SMOOTHING_MODES:
        raise ValueError(
            f"config key 'eval.smoothing' must be one of {SMOOTHING_MODES}, got {mode!r}"
        )
    out = np.array(scores, dtype=np.float64, copy=True)
    valid = np.isfinite(out)
    if mode == "none" or not valid.any():
        return out
    values = out[valid]
    if mode in ("median", "medfilt"):
        if window < 1 or window % 2 == 0:
            raise ValueError(
                f"config key 'eval.window' must be a positive odd number, got {window}"
            )
        padding = "nearest" if mode == "median" else "constant"  # constant: zeros, as medfilt
        out[valid] = median_filter(values, size=window, mode=padding, cval=0.0)
    else:
        out[valid] = gaussian_filter1d(values, sigma=sigma, mode="nearest")
    return out


def _labelled_pairs(
    scores: Sequence[np.ndarray], labels: Sequence[np.ndarray | None]
) -> list[tuple[np.ndarray, np.ndarray]]:
    """(scores, labels) of the scored frames of every labelled video."""
    pairs = []
    for v, (video_scores, video_labels) in enumerate(zip(scores, labels, strict=True)):
        if video_labels is None:
            continue
        video_labels = np.asarray(video_labels)
        if video_labels.shape != video_scores.shape:
            raise ValueError(
                f"video {v}: {video_labels.shape[0]} labels for {video_scores.shape[0]} frames"
            )
        valid = np.isfinite(video_scores)
        pairs.append((video_scores[valid], video_labels[valid].astype(np.int64)))
    return pairs


def labelled_frames(
    scores: Sequence[np.ndarray], labels: Sequence[np.ndarray | None]
) -> tuple[np.ndarray, np.ndarray]:
    """The scored frames of all labelled videos, concatenated: (scores, labels)."""
    pairs = _labelled_pairs(scores, labels)
    if not pairs:
        return np.zeros(0), np.zeros(0, dtype=np.int64)
    return np.concatenate([s for s, _ in pairs]), np.concatenate([lab for _, lab in pairs])


def micro_auroc(scores: Sequence[np.ndarray], labels: Sequence[np.ndarray | None]) -> float | None:
    """AUROC over the scored frames of all labelled videos together; None without both classes."""
    all_scores, all_labels = labelled_frames(scores, labels)
    if np.unique(all_labels).size < 2:
        return None
    return float(roc_auc_score(all_labels, all_scores))


def per_video_auroc(
    scores: Sequence[np.ndarray], labels: Sequence[np.ndarray | None]
) -> list[float | None]:
    """AUROC of each video; None for videos without labels or without both classes."""
    out: list[float | None] = []
    for video_scores, video_labels in zip(scores, labels, strict=True):
        pair = _labelled_pairs([video_scores], [video_labels])
        if not pair or np.unique(pair[0][1]).size < 2:
            out.append(None)
        else:
            out.append(float(roc_auc_score(pair[0][1], pair[0][0])))
    return out


def macro_auroc(scores: Sequence[np.ndarray], labels: Sequence[np.ndarray | None]) -> float | None:
    """Mean of the per-video AUROCs over videos that contain both classes."""
    aurocs = [a for a in per_video_auroc(scores, labels) if a is not None]
    return float(np.mean(aurocs)) if aurocs else None


def video_frame_scores(
    object_scores: np.ndarray,
    video_idx: np.ndarray,
    frame_idx: np.ndarray,
    num_frames: Sequence[int],
    empty_score: float,
    drop_first: int,
    smoothing: str,
    window: int,
    sigma: float,
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Raw (max over objects, first frames NaN) and smoothed frame scores of every video."""
    raw = [
        drop_first_frames(s, drop_first)
        for s in frame_max_scores(object_scores, video_idx, frame_idx, num_frames, empty_score)
    ]
    return raw, [smooth(s, smoothing, window, sigma) for s in raw]


@dataclass(frozen=True)
class FrameProtocol:
    """From object scores to smoothed frame scores (docs/method.md §6): optionally each object's
    score smoothed along its track (`tracks`, scoring/tracks.py; off in the paper's protocol),
    the maximum over a frame's objects, the first `drop_first` frames dropped, then `smoothing`
    over `window` frames (or a Gaussian of `sigma`)."""

    drop_first: int = 4
    smoothing: str = "medfilt"
    window: int = 17
    sigma: float = 3.0
    tracks: TrackSmoothing = TrackSmoothing()

    @classmethod
    def from_config(cls, cfg) -> FrameProtocol:
        e = cfg.eval
        tracks = TrackSmoothing(int(e.track_window), float(e.track_iou))
        return cls(int(e.drop_first), str(e.smoothing), int(e.window), float(e.sigma), tracks)

    def frame_scores(
        self,
        object_scores: np.ndarray,
        video_idx: np.ndarray,
        frame_idx: np.ndarray,
        num_frames: Sequence[int],
        empty_score: float,
        boxes: np.ndarray | None = None,
    ) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """video_frame_scores with this protocol's settings, of the object scores smoothed along
        their tracks first when `tracks` is on (it needs the objects' `boxes`)."""
        tracked = self.tracks.apply(object_scores, video_idx, frame_idx, boxes)
        return self.frame_scores_of_tracked(tracked, video_idx, frame_idx, num_frames, empty_score)

    def frame_scores_of_tracked(
        self,
        tracked_scores: np.ndarray,
        video_idx: np.ndarray,
        frame_idx: np.ndarray,
        num_frames: Sequence[int],
        empty_score: float,
    ) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """frame_scores of object scores already smoothed along their tracks (`tracks.apply`)."""
        return video_frame_scores(
            tracked_scores,
            video_idx,
            frame_idx,
            num_frames,
            empty_score,
            self.drop_first,
            self.smoothing,
            self.window,
            self.sigma,
        )


def auroc_summary(smoothed: Sequence[np.ndarray], labels: Sequence[np.ndarray | None]) -> dict:
    """Micro and macro AUROC plus the counts behind them."""
    pairs = _labelled_pairs(smoothed, labels)
    return {
        "micro_auroc": micro_auroc(smoothed, labels),
        "macro_auroc": macro_auroc(smoothed, labels),
        "per_video_auroc": per_video_auroc(smoothed, labels),
        "num_labelled_videos": len(pairs),
        "num_scored_frames": int(sum(len(s) for s, _ in pairs)),
        "num_abnormal_frames": int(sum(int(lab.sum()) for _, lab in pairs)),
    }


def flow_magnitude_object_scores(flows: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """Baseline object score: mean magnitude (pixels) of the last flow of each cube.

    flows: [N, T, 32, 32, 2] (the cube layout on disk, may be memory-mapped). Returns [N].
    """
    out = np.empty(len(flows), dtype=np.float64)
    for start in range(0, len(flows), chunk):
        last = np.asarray(flows[start : start + chunk, -1], dtype=np.float64)
        out[start : start + chunk] = np.sqrt((last**2).sum(-1)).mean(axis=(1, 2))
    return out
