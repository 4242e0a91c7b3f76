"""Thresholds on the smoothed frame score for detect: absolute, or at a false-alarm rate on the
training frames, and the anomalous intervals they give."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import norm

from inference.trained_run import DetectError, TrainedRun
from scoring.frame_scores import FrameProtocol


@dataclass
class Threshold:
    """A threshold on the smoothed frame score and how it was chosen."""

    value: float
    method: str  # absolute | training_frames | normal_approximation
    far: float | None = None
    training_far: float | None = None  # the share of training frames above it (training_frames)
    note: str = ""

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def absolute_threshold(value: float) -> Threshold:
    if not np.isfinite(value):
        raise DetectError(f"--threshold must be a finite number, got {value}")
    return Threshold(float(value), "absolute", note="given on the command line")


def far_threshold(det: TrainedRun, far: float) -> Threshold:
    """The smoothed score exceeded by a fraction `far` of the training frames (from the errors
    cached beside the checkpoint, or the training cubes); without either, the normal
    approximation of inference.detect's docstring."""
    if not 0 < far < 1:
        raise DetectError(f"--far must be a false-alarm rate strictly between 0 and 1, got {far}")
    objects = det.training_object_errors()
    if objects is None:
        value = float(norm.ppf(1 - far) * sum(map(abs, det.weights)))
        note = (
            "neither cached training errors nor training cubes found: per-object normal "
            "approximation z(1-far)*(sum of |weights|), ignoring the maximum over objects and the "
            "smoothing (rough)"
        )
        return Threshold(value, "normal_approximation", far, note=note)
    scores = training_frame_scores(det, objects)
    value = far_quantile(scores, far)
    return Threshold(
        value,
        "training_frames",
        far,
        training_far=float(np.mean(scores > value)),
        note=f"quantile of the smoothed scores of {len(scores)} training frames (seen in "
        "training: expect more false alarms on new normal footage)",
    )


def far_quantile(scores: np.ndarray, far: float) -> float:
    """The lowest training score that at most a fraction `far` of the training frames exceed
    (`score > threshold` is anomalous). Smoothed scores have plateaus of equal values, so a
    plain quantile can leave far fewer frames above it than asked for."""
    values = np.unique(scores)  # sorted
    above = len(scores) - np.searchsorted(np.sort(scores), values, side="right")
    return float(values[np.argmax(above <= far * len(scores) + 1e-9)])


def training_frame_scores(det: TrainedRun, objects: dict[str, np.ndarray]) -> np.ndarray:
    """Smoothed frame scores of every scored training frame from its objects' errors (and their
    S_a under "s_a", when the run uses it; all training cubes' when absent; S_kl under "s_kl"),
    with eval's protocol."""
    s_a = objects.get("s_a", det.train_s_a)
    fused = det.fuse(
        objects["s_r"],
        objects["s_p"],
        objects["boxes"],
        objects["frame_size"],
        s_a,
        objects.get("s_kl"),
    )
    _, smoothed = FrameProtocol.from_config(det.cfg).frame_scores(
        fused,
        objects["video_idx"],
        objects["frame_idx"],
        [int(n) for n in objects["num_frames"]],
        det.empty_score,
        objects["boxes"],
    )
    scores = np.concatenate(smoothed)
    return scores[np.isfinite(scores)]


def anomalous_intervals(smoothed: np.ndarray, threshold: float, fps: float) -> list[dict]:
    """Runs of frames whose smoothed score exceeds `threshold`: first and last frame (inclusive),
    the peak, and the same in seconds (end_s is the end of the last frame)."""
    above = np.concatenate([[False], np.nan_to_num(smoothed, nan=-np.inf) > threshold, [False]])
    edges = np.flatnonzero(np.diff(above.astype(np.int8)))
    intervals = []
    for start, stop in zip(edges[::2], edges[1::2]):
        peak = int(start + np.argmax(smoothed[start:stop]))
        intervals.append(
            {
                "start_frame": int(start),
                "end_frame": int(stop - 1),
                "peak_frame": peak,
                "peak_score": float(smoothed[peak]),
                "start_s": round(start / fps, 3),
                "end_s": round(stop / fps, 3),
                "peak_s": round(peak / fps, 3),
            }
        )
    return intervals
