"""Does one object score see the anomalous objects that another one locates? Per labelled video:

    python -m tools.located_objects results/ped2_cpu_cvae/scores.json \
        --locator results/ped2_cpu/scores.json [--key s_p] [--locator-key s_r]

In each abnormal frame the located object is the one with the highest `--locator-key` in the
locator's scores.json (both files must hold the same objects: the same cubes). The table compares
that object's `--key` with the highest `--key` of the normal frames' objects: a score that misses
the located objects gives them values like the normal frames' maxima. Labelled videos only.

With `--train-cubes` (a training cube folder, e.g. cache/ped2/cubes/training) a second table
says what the rivals are: the normal frames whose maximum `--key` reaches the located objects'
median, and how many of their top objects touch the image border or are wide (wider than
`--wide` times the 90th percentile of training boxes whose bottom edge is at the same height:
merged groups of people, as temporal-gradient boxes give them).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from pre_process.boxes import touches_border
from utils.cli import run_cli
from utils.io import read_json


def located_objects(doc: dict, locator: dict, key: str = "s_p", locator_key: str = "s_r") -> list:
    """One row per labelled video: medians of `key` of the located objects (abnormal frames) and
    of the frame maxima of `key` in abnormal and normal frames, and of every object of the normal
    frames; None where a video has no such frames."""
    rows = []
    for video, loc_video in zip(doc["videos"], locator["videos"], strict=True):
        if video["labels"] is None:
            continue
        objects, loc_objects = video["objects"], loc_video["objects"]
        if video["name"] != loc_video["name"] or objects["box"] != loc_objects["box"]:
            raise ValueError(f"video {video['name']}: the two scores files hold different objects")
        frames = np.asarray(objects["frame"])
        values, loc_values = np.asarray(objects[key]), np.asarray(loc_objects[locator_key])
        located, abnormal_max, normal_max, normal_all = [], [], [], []
        for label, in_frame in _scored_frames(video, frames):
            if label:
                located.append(values[in_frame[np.argmax(loc_values[in_frame])]])
                abnormal_max.append(values[in_frame].max())
            else:
                normal_max.append(values[in_frame].max())
                normal_all.extend(values[in_frame])
        rows.append(
            {
                "video": video["name"],
                "abnormal_frames": len(located),
                "normal_frames": len(normal_max),
                "located_median": _median(located),
                "abnormal_max_median": _median(abnormal_max),
                "normal_max_median": _median(normal_max),
                "normal_object_median": _median(normal_all),
            }
        )
    return rows


def wide_boxes(boxes, train_boxes, factor: float = 1.5, bin_px: int = 20) -> np.ndarray:
    """True for boxes [N, 4] (x1, y1, x2, y2) wider than `factor` times the 90th percentile width
    of the training boxes whose bottom edge lies in the same `bin_px` band (nearer the camera,
    people are larger); bands with fewer than 10 training boxes use all of them."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    train = np.asarray(train_boxes, dtype=np.float64).reshape(-1, 4)
    train_band, train_width = (train[:, 3] // bin_px).astype(int), train[:, 2] - train[:, 0]
    band = (boxes[:, 3] // bin_px).astype(int)
    reference = np.full(len(boxes), np.percentile(train_width, 90))
    for b in np.unique(band):  # one percentile per band, not per box
        widths = train_width[train_band == b]
        if widths.size >= 10:
            reference[band == b] = np.percentile(widths, 90)
    return boxes[:, 2] - boxes[:, 0] > factor * reference


def rival_frames(
    doc: dict,
    locator: dict,
    train_boxes,
    key: str = "s_p",
    locator_key: str = "s_r",
    factor: float = 1.5,
) -> list:
    """One row per labelled video: how many normal frames have a maximum `key` at least the
    median of the located objects, and of those frames' top objects how many touch the image
    border (the scores' border margin) or are wide (`wide_boxes`)."""
    margin = float(doc["train_stats"].get("groups", {}).get("margin", 1.0))
    located = {r["video"]: r for r in located_objects(doc, locator, key, locator_key)}
    rows = []
    for video in doc["videos"]:
        if video["labels"] is None or located[video["name"]]["located_median"] is None:
            continue
        threshold = located[video["name"]]["located_median"]
        objects = video["objects"]
        frames, values = np.asarray(objects["frame"]), np.asarray(objects[key])
        boxes = np.asarray(objects["box"], dtype=np.float64).reshape(-1, 4)
        tops = []
        for label, in_frame in _scored_frames(video, frames):
            top = in_frame[np.argmax(values[in_frame])]
            if not label and values[top] >= threshold:
                tops.append(top)
        top_boxes = boxes[tops]
        rows.append(
            {
                "video": video["name"],
                "threshold": threshold,
                "rival_frames": len(tops),
                "border": int(touches_border(top_boxes, doc["frame_size"], margin).sum()),
                "wide": int(wide_boxes(top_boxes, train_boxes, factor).sum()),
            }
        )
    return rows


def _scored_frames(video: dict, frames: np.ndarray):
    """(label, object indices) of each frame of a labelled video that is scored (not dropped)
    and holds objects; `frames` is the frame index of each object."""
    for f, (label, smoothed) in enumerate(zip(video["labels"], video["smoothed_score"])):
        in_frame = np.flatnonzero(frames == f)
        if smoothed is not None and in_frame.size:
            yield label, in_frame


def _median(values: list) -> float | None:
    return float(np.median(values)) if values else None


def _fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:.3g}"  # S_kl is of order 1e-3


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("scores", type=Path, help="the scores.json whose --key is studied")
    parser.add_argument(
        "--locator", type=Path, required=True, help="a scores.json of the same cubes"
    )
    parser.add_argument("--key", default="s_p", help="object score studied (s_r, s_p, s_a, score)")
    parser.add_argument("--locator-key", default="s_r", help="object score that locates anomalies")
    parser.add_argument(
        "--train-cubes", type=Path, help="training cube folder (boxes.npy): describe the rivals"
    )
    parser.add_argument("--wide", type=float, default=1.5, help="wide: times the width p90")
    args = parser.parse_args(argv)
    doc, locator = read_json(args.scores), read_json(args.locator)
    rows = located_objects(doc, locator, args.key, args.locator_key)
    print(
        f"median {args.key} per labelled video: of the object with the highest "
        f"{args.locator_key} ({args.locator}) in abnormal frames, of each frame's maximum and "
        "of every normal-frame object"
    )
    print(
        "| video | abnormal frames | normal frames | located object | abnormal max | normal max "
        "| normal object |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['video']} | {r['abnormal_frames']} | {r['normal_frames']} | "
            f"{_fmt(r['located_median'])} | {_fmt(r['abnormal_max_median'])} | "
            f"{_fmt(r['normal_max_median'])} | {_fmt(r['normal_object_median'])} |"
        )
    if args.train_cubes is not None:
        _print_rivals(doc, locator, args)


def _print_rivals(doc: dict, locator: dict, args) -> None:
    boxes_file = args.train_cubes / "boxes.npy"
    if not boxes_file.is_file():
        raise FileNotFoundError(f"{boxes_file}: no training boxes (run pre_process.run first)")
    rows = rival_frames(doc, locator, np.load(boxes_file), args.key, args.locator_key, args.wide)
    print(
        f"\nnormal frames whose maximum {args.key} reaches the located objects' median, and "
        f"their top objects: touching the border, wider than {args.wide}x the training p90"
    )
    print("| video | located median | such normal frames | at the border | wide |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['video']} | {r['threshold']:.2f} | {r['rival_frames']} | {r['border']} | "
            f"{r['wide']} |"
        )


if __name__ == "__main__":
    run_cli(main, "tools.located_objects")
