"""Footage without labels (`data.test_split: null`): what a user learns before deploying.

With no labelled test split there is no AUROC. Instead the run gets its training statistics, a
threshold at the false-alarm rate `eval.far` over the frames of the training videos (the
validation videos left out), and the false-alarm rate that threshold gives on the validation
videos: normal footage the model never trained on, so the rate to expect on new normal footage.
Written to <run_dir>/eval/deployment.json; `detect.py --far` chooses the same kind of threshold.
"""

from __future__ import annotations

import numpy as np

from engine.run_dir import RunLayout
from inference.thresholds import far_quantile, training_frame_scores
from inference.trained_run import TrainedRun, trained_run_from_config
from utils.io import write_json
from utils.misc import get_logger

MIN_TRAINING_FRAMES = 1000  # about 40 s at 25 frames/s: fewer gives unstable statistics
LARGE_FRAME_SIDE = 1280  # the box parameters were tuned on frames of a few hundred pixels


def footage_warnings(num_frames: int, frame_size: tuple[int, int]) -> list[str]:
    """What to tell a user about their training footage before trusting the run."""
    warnings = []
    if num_frames < MIN_TRAINING_FRAMES:
        warnings.append(
            f"only {num_frames} training frames: at least {MIN_TRAINING_FRAMES} (about 40 s at "
            "25 frames/s) of normal footage are needed for stable statistics and thresholds"
        )
    if max(frame_size) > LARGE_FRAME_SIDE:
        warnings.append(
            f"frames of {frame_size[1]}x{frame_size[0]} pixels are far larger than the box "
            "parameters expect (a few hundred pixels): resize the footage, or scale "
            "preprocess.boxes.contour_min_area / min_area with the frame area"
        )
    return warnings


def _split_objects(objects: dict, keep: np.ndarray) -> dict:
    """The per-object training errors of the videos where `keep` [num videos] is true, with
    video indices renumbered."""
    rows = keep[objects["video_idx"]]
    renumber = np.cumsum(keep) - 1
    out = {k: objects[k][rows] for k in ("s_r", "s_p", "frame_idx", "boxes")}
    for key in ("s_a", "s_kl"):
        if objects.get(key) is not None:
            out[key] = objects[key][rows]
    out["video_idx"] = renumber[objects["video_idx"][rows]]
    out["num_frames"] = objects["num_frames"][keep]
    out["frame_size"] = objects["frame_size"]
    return out


def deployment_check(cfg, run: TrainedRun | None = None) -> dict:
    """Threshold at eval.far on the training videos, and its false-alarm rate on the
    validation videos (none without `train.val_videos`)."""
    run = run or trained_run_from_config(cfg)
    train = run.cubes.open(run.cubes.train_split)
    objects = dict(run.training_object_errors(), s_a=run.train_s_a)
    is_val = np.array([name in cfg.train.val_videos for name in train.videos])
    fit = training_frame_scores(run, _split_objects(objects, ~is_val))
    threshold = far_quantile(fit, cfg.eval.far)
    doc = {
        "far": cfg.eval.far,
        "threshold": threshold,
        "training_far": float(np.mean(fit > threshold)),
        "num_training_frames": int(fit.size),
        "val_videos": list(cfg.train.val_videos),
        "validation_far": None,
        "num_validation_frames": 0,
        "warnings": footage_warnings(
            int(sum(train.num_frames)), tuple(train.manifest["frame_size"])
        ),
    }
    if is_val.any():
        val = training_frame_scores(run, _split_objects(objects, is_val))
        doc.update(
            validation_far=float(np.mean(val > threshold)), num_validation_frames=int(val.size)
        )
    for warning in doc["warnings"]:
        get_logger().warning(warning)
    write_json(RunLayout.from_config(cfg).eval_dir / "deployment.json", doc)
    return doc


def deployment_text(doc: dict) -> str:
    """What the pipeline prints for footage without labels."""
    lines = [
        "no labelled test split (data.test_split is null): no AUROC; the run is calibrated on "
        "normal footage instead",
        f"threshold {doc['threshold']:.4g}: exceeded by {100 * doc['training_far']:.2f} % of "
        f"{doc['num_training_frames']} training frames (eval.far = {doc['far']})",
    ]
    if doc["validation_far"] is None:
        lines.append(
            "no validation videos (train.val_videos): name one or two to learn the "
            "false-alarm rate on normal footage the model has not seen"
        )
    else:
        lines.append(
            f"on the validation videos {', '.join(doc['val_videos'])} "
            f"({doc['num_validation_frames']} frames) it gives "
            f"{100 * doc['validation_far']:.2f} % false alarms: expect about this on new normal "
            "footage"
        )
    return "\n".join(lines + [f"warning: {w}" for w in doc["warnings"]])
