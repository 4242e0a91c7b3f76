"""A development stand-in for appearance anomalies at normal speed, made from normal data only.

The validation videos of a run (`train.val_videos`: whole training videos the model never trained
on) are copied with one pasted object of an unusual shape moving at walking speed (0.9 px/frame,
about a Ped2 walker's): a cyclist-like sprite (rider on two wheels) or a cart (a box on wheels).
Each object walks in from the left or right image border, so the stand-in also shows how objects
cut by the border are scored. A frame is abnormal while any pixel of the object is in view. The
untouched validation videos are scored beside them as all-normal videos.

Every copy is scored with the run through `detect` (boxes -> flow -> cubes -> model, exactly as
for any user video), and the micro AUROC of the fused score and of each branch is computed over
all stand-in videos with the run's training statistics and smoothing:

    python -m tools.pasted_standin --run runs/ped2_cpu     # writes runs/ped2_cpu/eval/standin.json
    python -m tools.pasted_standin --run runs/ped2_cpu --rescore --set eval.w_a=2  # re-fuse only

`--rescore` re-fuses the object scores saved by an earlier scoring (<work>/scores) with the current
eval weights, smoothing and border groups, without running the model; it refuses scores made
with another checkpoint, precision or S_a feature.
This is development data that may be looked at (`--preview` writes a strip of pasted frames);
the Ped2 test videos are never used.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from datasets.frames import numbered_frames, open_video, split_dir
from inference.detect import detect_with, output_names
from inference.trained_run import TrainedRun, load_trained_run
from pre_process.boxes import touches_border
from scoring.frame_scores import (
    FrameProtocol,
    auroc_summary,
    empty_frame_score,
    fuse_scores,
)
from scoring.weights import ScoreSet
from utils.cli import add_override_option, run_cli
from utils.io import read_json, write_json

SPEED = 0.9  # px/frame, a Ped2 walker's speed
ENTRY_FRAME = 10  # the object starts to enter at this frame
KINDS = ("cyclist", "cart")


@dataclass
class Sprite:
    image: np.ndarray  # [h, w, 3] uint8 (BGR, as OpenCV writes)
    alpha: np.ndarray  # [h, w] float32 in [0, 1]


def draw_sprite(kind: str) -> Sprite:
    """A grey-level sprite drawn at 4x and reduced (anti-aliased edges): cyclist about 24x34 px
    (rider and two wheels), cart about 30x22 px (a box on two small wheels)."""
    scale = 4
    if kind == "cyclist":
        h, w = 34, 24
    elif kind == "cart":
        h, w = 22, 30
    else:
        raise ValueError(f"unknown stand-in object {kind!r}; choose from {KINDS}")
    big = np.full((h * scale, w * scale), 0, np.uint8)
    mask = np.zeros_like(big)

    def paint(draw):  # draw the same shape into the image (its grey) and the mask
        draw(big, None)
        draw(mask, 255)

    def circle(c, r, grey, thick=-1):
        paint(lambda img, v: cv2.circle(img, c, r, grey if v is None else v, thick))

    def rect(p, q, grey):
        paint(lambda img, v: cv2.rectangle(img, p, q, grey if v is None else v, -1))

    def line(p, q, grey, thick):
        paint(lambda img, v: cv2.line(img, p, q, grey if v is None else v, thick))

    if kind == "cyclist":
        for cx in (16, 80):  # wheels
            circle((cx, 112), 15, 40, thick=6)
        line((16, 112), (48, 88), 60, 5)
        line((48, 88), (80, 112), 60, 5)
        line((48, 88), (56, 60), 70, 6)
        rect((36, 24), (64, 68), 55)  # body
        circle((52, 14), 10, 150)  # head
    else:
        rect((4, 8), (116, 68), 185)  # box
        rect((4, 8), (116, 16), 95)  # rim
        for cx in (24, 96):
            circle((cx, 76), 10, 35)
    image = cv2.resize(big, (w, h), interpolation=cv2.INTER_AREA)
    alpha = cv2.resize(mask, (w, h), interpolation=cv2.INTER_AREA).astype(np.float32) / 255
    return Sprite(cv2.cvtColor(image, cv2.COLOR_GRAY2BGR), alpha)


def paste(frame: np.ndarray, sprite: Sprite, x: float, y: float) -> np.ndarray:
    """The frame with the sprite's top-left corner at (x, y), sub-pixel (bilinear)."""
    height, width = frame.shape[:2]
    shift = np.float32([[1, 0, x], [0, 1, y]])
    image = cv2.warpAffine(sprite.image, shift, (width, height), flags=cv2.INTER_LINEAR)
    alpha = cv2.warpAffine(sprite.alpha, shift, (width, height), flags=cv2.INTER_LINEAR)
    alpha = alpha[..., None]
    return (frame * (1 - alpha) + image * alpha).round().clip(0, 255).astype(np.uint8)


def pasted_video(
    frame_paths: list[Path], out_dir: Path, kind: str, from_left: bool, y: float
) -> np.ndarray:
    """Write the frames with the object pasted (JPEG, quality 95); returns the labels."""
    sprite = draw_sprite(kind)
    h, w = sprite.alpha.shape
    out_dir.mkdir(parents=True, exist_ok=True)
    labels = np.zeros(len(frame_paths), np.uint8)
    for i, path in enumerate(frame_paths):
        frame = cv2.imread(str(path), cv2.IMREAD_COLOR)
        width = frame.shape[1]
        if i >= ENTRY_FRAME:
            travelled = SPEED * (i - ENTRY_FRAME + 1)
            x = -w + travelled if from_left else width - travelled
            frame = paste(frame, sprite, x, y)
            labels[i] = int(x + w > 0 and x < width)
        cv2.imwrite(str(out_dir / f"{i:03d}.jpg"), frame, [cv2.IMWRITE_JPEG_QUALITY, 95])
    return labels


def make_standin(
    train_folder: Path, val_videos: Sequence[str], out_root: Path
) -> list[tuple[Path, np.ndarray, str]]:
    """(frame folder, labels, kind) of every stand-in video: each validation video (a frame
    folder in `train_folder`, the training split's) once per object kind (the object entering
    from alternating sides), and once untouched; the pasted copies are written under out_root."""
    if not val_videos:
        raise ValueError("the run has no validation videos (train.val_videos) to paste into")
    items = []
    for v, name in enumerate(val_videos):
        frames = list(numbered_frames(train_folder / name))
        items.append((train_folder / name, np.zeros(len(frames), np.uint8), "none"))
        for k, kind in enumerate(KINDS):
            out = out_root / f"{kind}_{name}"
            from_left = (v + k) % 2 == 0
            labels = pasted_video(frames, out, kind, from_left, y=150.0 - 12 * k)
            items.append((out, labels, kind))
    return items


def _objects(folder: Path) -> dict[str, np.ndarray]:
    """Per-object frame index, box, S_r, S_p (and S_a, S_kl) from detect's objects.csv."""
    table = np.genfromtxt(folder / "objects.csv", delimiter=",", names=True, ndmin=1)
    names = ("frame", "x1", "y1", "x2", "y2", "s_r", "s_p", "s_a", "s_kl")
    keys = [k for k in names if k in table.dtype.names]
    return {k: np.atleast_1d(table[k]) for k in keys}


def _micro(smoothed, labels, keep) -> float:
    summary = auroc_summary(
        [s for s, k in zip(smoothed, keep) if k], [lab for lab, k in zip(labels, keep) if k]
    )
    return round(100 * summary["micro_auroc"], 3)


def scores_identity(det: TrainedRun) -> dict:
    """What the saved object scores depend on: checkpoint, test mode, precision, S_a feature."""
    cfg = det.cfg
    appearance = {"k": cfg.eval.appearance_k, "hog_weight": cfg.eval.appearance_hog}
    return {"scoring": det.scoring.identity(det.ckpt), "appearance": appearance}


def saved_scores_ready(out_dir: Path, det: TrainedRun) -> None:
    """Raise unless `out_dir` holds object scores made by this run's current scoring."""
    path = out_dir / "identity.json"
    if not path.is_file():
        raise FileNotFoundError(f"no saved stand-in scores in {out_dir}: run without --rescore")
    if read_json(path) != json.loads(json.dumps(scores_identity(det))):
        raise ValueError(
            f"{path}: the saved stand-in scores were made with another checkpoint, precision or "
            "S_a feature (eval.appearance_k/appearance_hog); run without --rescore"
        )


def score_standin(
    det: TrainedRun,
    items: list[tuple[Path, np.ndarray, str]],
    out_dir: Path,
    weights: dict,
    rescore: bool = False,
) -> dict:
    """Score the stand-in videos with the run (detect writes its outputs under `out_dir`; with
    `rescore`, those of an earlier scoring are read instead); micro AUROC (%) per named score,
    over all videos and per object kind, fused as eval.py fuses (training statistics, border
    groups, smoothing)."""
    videos = [open_video(p) for p, _, _ in items]
    names = output_names(videos)
    if rescore:
        saved_scores_ready(out_dir, det)
    else:
        (out_dir / "identity.json").unlink(missing_ok=True)
        detect_with(det, videos, out_dir, progress=False)
        write_json(out_dir / "identity.json", scores_identity(det))
    objects = [_objects(out_dir / name) for name in names]
    cfg = det.cfg
    labels = [lab for _, lab, _ in items]
    kinds = [k for _, _, k in items]

    def column(key):
        return np.concatenate([o[key] for o in objects]) if key in objects[0] else None

    video_idx = np.concatenate([np.full(len(o["frame"]), v) for v, o in enumerate(objects)])
    frame_idx = column("frame").astype(np.int64)
    boxes = np.stack([column(k) for k in ("x1", "y1", "x2", "y2")], axis=1)
    border = None
    if cfg.eval.border_stats:
        border = touches_border(boxes, videos[0].frame_size, cfg.eval.border_margin)
    result = {"videos": names, "kinds": kinds, "speed_px_per_frame": SPEED, "scores": {}}
    for name, (w_r, w_p, w_a, w_kl) in weights.items():
        optional = dict(s_a=column("s_a"), w_a=w_a, s_kl=column("s_kl"), w_kl=w_kl)
        obj = fuse_scores(column("s_r"), column("s_p"), det.stats, w_r, w_p, border, **optional)
        grouped = border is not None
        empty = empty_frame_score(det.stats, w_r, w_p, grouped=grouped, w_a=w_a, w_kl=w_kl)
        _, smoothed = FrameProtocol.from_config(cfg).frame_scores(
            obj,
            video_idx,
            frame_idx,
            [len(lab) for lab in labels],
            empty,
            boxes,
        )
        result["scores"][name] = {
            "w_r": w_r,
            "w_p": w_p,
            **({"w_a": w_a} if w_a else {}),
            **({"w_kl": w_kl} if w_kl else {}),
            "micro_auroc": _micro(smoothed, labels, [True] * len(items)),
            "micro_auroc_per_kind": {
                kind: _micro(smoothed, labels, [k in (kind, "none") for k in kinds])
                for kind in KINDS
            },
        }
    return result


def write_preview(items: list[tuple[Path, np.ndarray, str]], path: Path) -> None:
    """One pasted frame per stand-in video with its object in view, side by side."""
    tiles = []
    for folder, labels, kind in items:
        if kind == "none":
            continue
        frames = numbered_frames(folder)
        shown = np.flatnonzero(labels)
        tiles.append(cv2.imread(str(frames[shown[len(shown) // 2]])))
    cv2.imwrite(str(path), np.concatenate(tiles, axis=1))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", type=Path, required=True, help="a trained run directory")
    parser.add_argument("--out", type=Path, help="JSON to write (default: <run>/eval/standin.json)")
    parser.add_argument("--work", type=Path, default=None, help="frames and scores (<run>/standin)")
    parser.add_argument("--preview", type=Path, help="also write a PNG of pasted frames here")
    parser.add_argument(
        "--rescore", action="store_true", help="re-fuse the saved object scores (no model run)"
    )
    add_override_option(parser, "eval.w_a=2")
    args = parser.parse_args(argv)
    det = load_trained_run(args.run, args.overrides)
    work = args.work or args.run / "standin"
    cfg = det.cfg
    train_folder = split_dir(cfg.data, cfg.data.train_split)
    items = make_standin(train_folder, cfg.train.val_videos, work / "frames")
    weights = ScoreSet.from_config(cfg).weights
    result = score_standin(det, items, work / "scores", weights, rescore=args.rescore)
    write_json(args.out or args.run / "eval" / "standin.json", result)
    if args.preview:
        write_preview(items, args.preview)
    for name, s in result["scores"].items():
        print(f"{name}: micro AUROC {s['micro_auroc']:.2f} %  per kind {s['micro_auroc_per_kind']}")


if __name__ == "__main__":
    run_cli(main, "tools.pasted_standin")
