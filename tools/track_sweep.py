"""Micro AUROC of published results for several track windows and overlaps (docs/method.md §6.2),
from their saved object scores alone (no model, no cubes):

    python -m tools.track_sweep results/ped2_cpu results/ped2_cpu_cvae ... \
        [--windows 1 5 9 17] [--ious 0.1 0.3 0.5] [--out results/track_sweep.json]

Each result's fused object scores (scores.json "fused", or "score" where it was saved before
track smoothing existed) are smoothed along tracks, maximised per frame and filtered with the
result's own protocol; AUROC over its labelled videos. Prints one row per result.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from scoring.frame_scores import FrameProtocol, auroc_summary, empty_frame_score
from scoring.tracks import TrackSmoothing
from utils.cli import run_cli
from utils.io import read_json, write_json


def saved_objects(doc: dict) -> dict[str, np.ndarray]:
    """Fused score, box, video and frame index of every object of a scores.json document."""
    columns = {"fused": [], "box": [], "video": [], "frame": []}
    for v, video in enumerate(doc["videos"]):
        objects = video["objects"]
        if "fused" not in objects and doc.get("tracks", {}).get("window", 1) > 1:
            raise ValueError(f"video {video['name']}: track-smoothed scores without 'fused'")
        columns["fused"] += objects.get("fused", objects["score"])
        columns["box"] += objects["box"]
        columns["frame"] += objects["frame"]
        columns["video"] += [v] * len(objects["frame"])
    out = {k: np.asarray(x, dtype=np.float64) for k, x in columns.items()}
    out["box"] = out["box"].reshape(-1, 4)
    out["video"], out["frame"] = out["video"].astype(np.int64), out["frame"].astype(np.int64)
    return out


def sweep(doc: dict, windows: list[int], ious: list[float]) -> dict[str, float]:
    """Micro AUROC (%) per "window/iou" of one result."""
    objects = saved_objects(doc)
    smoothing = doc["smoothing"]
    grouped = bool(doc["border_stats"])
    weights = (doc["w_r"], doc["w_p"])
    optional = dict(w_a=doc.get("w_a", 0.0), w_kl=doc.get("w_kl", 0.0))
    empty = empty_frame_score(doc["train_stats"], *weights, grouped, **optional)
    labels = [None if v["labels"] is None else np.asarray(v["labels"]) for v in doc["videos"]]
    num_frames = [v["num_frames"] for v in doc["videos"]]
    out = {}
    for window in windows:
        for iou in ious if window > 1 else ious[:1]:
            protocol = FrameProtocol(
                doc["drop_first"],
                smoothing["smoothing"],
                smoothing["window"],
                smoothing["sigma"],
                TrackSmoothing(window, iou),
            )
            _, smoothed = protocol.frame_scores(
                objects["fused"],
                objects["video"],
                objects["frame"],
                num_frames,
                empty,
                objects["box"],
            )
            micro = auroc_summary(smoothed, labels)["micro_auroc"]
            out[f"{window}/{iou:g}"] = round(100 * micro, 2)
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("results", nargs="+", type=Path, help="result folders (with scores.json)")
    parser.add_argument("--windows", type=int, nargs="+", default=[1, 5, 9, 17])
    parser.add_argument("--ious", type=float, nargs="+", default=[0.1, 0.3, 0.5])
    parser.add_argument("--out", type=Path, default=None, help="also write the table as JSON")
    args = parser.parse_args(argv)
    table = {}
    for folder in args.results:
        table[folder.name] = sweep(read_json(folder / "scores.json"), args.windows, args.ious)
        print(folder.name, " ".join(f"{k}:{v:.2f}" for k, v in table[folder.name].items()))
    if args.out is not None:
        write_json(args.out, {"windows": args.windows, "ious": args.ious, "micro_auroc": table})


if __name__ == "__main__":
    run_cli(main)
