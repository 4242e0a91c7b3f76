"""How many normal labelled frames score like anomalies, and how many of those owe it to an object
cut by the image border:

    python -m tools.border_check results/ped2_cpu/scores.json [--quantile 0.2] [--top 5]

A normal frame is "hard" when its smoothed score is above the given quantile of the abnormal
frames' smoothed scores; its top object is the highest-scoring object of that frame. The
highest-scoring normal frames are listed with the share of abnormal frames that score below
them (0 % for a normal frame below every abnormal one), a margin that, unlike the count of hard
frames, still tells two models apart when neither has a hard frame.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from pre_process.boxes import BORDER_MARGIN, touches_border
from utils.cli import run_cli
from utils.io import read_json


def hard_normal_frames(
    doc: dict, quantile: float = 0.2, margin: float = BORDER_MARGIN, num_highest: int = 5
) -> dict:
    """Hard normal frames of a scores.json document, with whether their top object touches
    the border, and the `num_highest` highest normal frames with the share of abnormal frames
    below them."""
    frame_size = doc.get("frame_size")
    if frame_size is None:
        raise ValueError("scores file has no frame_size (made before it was recorded)")
    normal, abnormal = [], []
    for video in doc["videos"]:
        if video["labels"] is None:
            continue
        objects = video["objects"]
        frames, scores = np.asarray(objects["frame"]), np.asarray(objects["score"])
        border = touches_border(np.asarray(objects["box"]), frame_size, margin)
        for f, (label, smoothed) in enumerate(zip(video["labels"], video["smoothed_score"])):
            if smoothed is None:
                continue
            in_frame = np.flatnonzero(frames == f)
            top = in_frame[np.argmax(scores[in_frame])] if in_frame.size else None
            row = (float(smoothed), bool(top is not None and border[top]), video["name"], f)
            (abnormal if label else normal).append(row)
    abnormal_scores = np.sort([a[0] for a in abnormal])
    limit = float(np.quantile(abnormal_scores, quantile))
    hard = sorted((n for n in normal if n[0] > limit), reverse=True)
    highest = sorted(normal, reverse=True)[:num_highest]
    below = np.searchsorted(abnormal_scores, [h[0] for h in highest], side="left")
    return {
        "abnormal_quantile": quantile,
        "limit": limit,
        "normal_frames": len(normal),
        "hard_normal_frames": len(hard),
        "top_object_at_border": sum(h[1] for h in hard),
        "frames": [{"video": h[2], "frame": h[3], "score": h[0], "border": h[1]} for h in hard],
        "highest_normal": [
            {
                "video": h[2],
                "frame": h[3],
                "score": h[0],
                "border": h[1],
                "abnormal_below_percent": 100.0 * int(n) / len(abnormal_scores),
            }
            for h, n in zip(highest, below)
        ],
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("scores", type=Path, help="a scores.json written by eval.py")
    parser.add_argument("--quantile", type=float, default=0.2)
    parser.add_argument("--top", type=int, default=5, help="highest normal frames to list")
    args = parser.parse_args(argv)
    result = hard_normal_frames(read_json(args.scores), args.quantile, num_highest=args.top)
    print(
        f"{result['hard_normal_frames']} of {result['normal_frames']} normal frames score above "
        f"the {args.quantile:g} quantile of the abnormal frames ({result['limit']:.2f}); "
        f"{result['top_object_at_border']} of them have their top object at the image border"
    )
    for row in result["frames"][:10]:
        where = "object at the border" if row["border"] else "object inside"
        print(f"  video {row['video']} frame {row['frame']}: {row['score']:.2f}, top {where}")
    print("highest normal frames (share of abnormal frames scoring below them):")
    for row in result["highest_normal"]:
        where = "object at the border" if row["border"] else "object inside"
        print(
            f"  video {row['video']} frame {row['frame']}: {row['score']:.2f}, above "
            f"{row['abnormal_below_percent']:.1f} % of abnormal frames, top {where}"
        )


if __name__ == "__main__":
    run_cli(main, "tools.border_check")
