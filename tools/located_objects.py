"""Does one object score see the anomalous objects that another one locates? Per labelled video:

    python -m tools.located_objects results/ped2_cpu_cvae/scores.json \
        --locator results/ped2_cpu/scores.json [--key s_p] [--locator-key s_r]

In each abnormal frame the located object is the one with the highest `--locator-key` in the
locator's scores.json (both files must hold the same objects: the same cubes). The table compares
that object's `--key` with the highest `--key` of the normal frames' objects: a score that misses
the located objects gives them values like the normal frames' maxima. Labelled videos only.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

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
        for f, (label, smoothed) in enumerate(zip(video["labels"], video["smoothed_score"])):
            in_frame = np.flatnonzero(frames == f)
            if smoothed is None or not in_frame.size:
                continue
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


def _median(values: list) -> float | None:
    return float(np.median(values)) if values else None


def _fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("scores", type=Path, help="the scores.json whose --key is studied")
    parser.add_argument(
        "--locator", type=Path, required=True, help="a scores.json of the same cubes"
    )
    parser.add_argument("--key", default="s_p", help="object score studied (s_r, s_p, s_a, score)")
    parser.add_argument("--locator-key", default="s_r", help="object score that locates anomalies")
    args = parser.parse_args(argv)
    rows = located_objects(
        read_json(args.scores), read_json(args.locator), args.key, args.locator_key
    )
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


if __name__ == "__main__":
    run_cli(main, "tools.located_objects")
