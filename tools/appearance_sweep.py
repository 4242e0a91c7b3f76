"""The appearance novelty S_a alone, for several crop features, without a trained model.

S_a needs no training (scoring/appearance.py), so its feature can be chosen before any model
exists: for each `eval.appearance_hog` given, the bank and the training statistics are built
from the config's training cubes (the validation videos left out of the bank, as eval.py does),
and S_a alone is scored (similarities in float32) with the config's protocol (border groups,
smoothing) on

- the labelled test videos (micro and macro AUROC; videos without labels are skipped), and
- the pasted-object stand-in of `tools.pasted_standin` (objects of unusual shape at walking
  speed in the validation videos; boxes and crops cut exactly as for any user video). Its micro
  AUROC pools the pasted and the untouched videos, as `tools.pasted_standin` reports it; its
  macro AUROC averages the pasted videos alone (the untouched ones hold no abnormal frame), so
  it asks only whether a pasted object outscores the rest of its own video.

    python -m tools.appearance_sweep --cfg cfgs/ped2_cpu.yaml --hog 0 0.3 0.5 0.7

writes results/appearance_sweep.json (or --out) and prints one line per weight.
"""

from __future__ import annotations

import argparse
import functools
from pathlib import Path

import numpy as np

from datasets import CubeSource
from datasets.frames import open_video, split_dir
from datasets.labels import LabelSource
from pre_process.boxes import BoxExtractor, touches_border
from pre_process.flow import build_flow_estimator
from pre_process.stream import stream_cubes
from scoring.appearance import AppearanceBank, grey_crops, training_bank
from scoring.frame_scores import (
    FrameProtocol,
    auroc_summary,
    border_statistics,
    empty_frame_score,
    fuse_scores,
    score_statistics,
)
from tools.pasted_standin import make_standin
from utils.cli import run_cli
from utils.config import load_config
from utils.io import write_json


class Objects:
    """Grey target-frame crops [N, s, s], boxes [N, 4], video and frame index [N] of a set of
    videos, with their names, frame counts, labels (None: unlabelled) and frame size."""

    def __init__(self, crops, boxes, video_idx, frame_idx, videos, num_frames, labels, frame_size):
        self.crops, self.boxes = crops, np.asarray(boxes, np.float64).reshape(-1, 4)
        self.video_idx, self.frame_idx = np.asarray(video_idx), np.asarray(frame_idx)
        self.videos, self.num_frames = list(videos), list(num_frames)
        self.labels, self.frame_size = labels, frame_size


def cube_objects(source: CubeSource, split: str, label_source: LabelSource | None) -> Objects:
    """The cubes of `split` as objects, labelled from `label_source` (None: unlabelled)."""
    cubes = source.open(split)
    by_name = {}
    if label_source is not None:
        by_name = label_source.load(list(cubes.videos), list(cubes.num_frames))
    labels = [by_name.get(name) for name in cubes.videos]
    return Objects(
        grey_crops(cubes.target_frames()),
        cubes.boxes,
        cubes.video_idx,
        cubes.frame_idx,
        cubes.videos,
        cubes.num_frames,
        labels,
        tuple(cubes.manifest["frame_size"]),
    )


def standin_objects(items: list[tuple[Path, np.ndarray, str]], stream) -> Objects:
    """The stand-in videos (`make_standin`'s items) cut into objects by `stream` (frames ->
    StreamFrames, as pre_process.stream.stream_cubes with the run's boxes and flow; no model)."""
    crops, boxes, video_idx, frame_idx = [], [], [], []
    for v, (folder, _, _) in enumerate(items):
        for frame in stream(open_video(folder).frames()):
            crops.extend(grey_crops(frame.frame_cubes[:, -1]))
            boxes.extend(frame.boxes)
            video_idx.extend([v] * len(frame.boxes))
            frame_idx.extend([frame.index] * len(frame.boxes))
    labels = [lab for _, lab, _ in items]
    names = [folder.name for folder, _, _ in items]
    size = open_video(items[0][0]).frame_size
    return Objects(
        np.asarray(crops), boxes, video_idx, frame_idx, names, map(len, labels), labels, size
    )


def standin_from_config(cfg, work: Path) -> Objects:
    """The config's stand-in (its validation videos, frames written under `work`) as objects."""
    items = make_standin(split_dir(cfg.data, cfg.data.train_split), cfg.train.val_videos, work)
    flow_cfg, cube_cfg = cfg.preprocess.flow, cfg.preprocess.cubes
    stream = functools.partial(
        stream_cubes,
        box_extractor=BoxExtractor(cfg.preprocess.boxes, "cpu"),
        estimate_flow=build_flow_estimator(flow_cfg),
        first_frame=flow_cfg.first_frame,
        flow_dtype=flow_cfg.dtype,
        size=cube_cfg.size,
        num_frames=cube_cfg.num_frames,
        border_aspect=float(cube_cfg.border_aspect),
    )
    return standin_objects(items, stream)


def appearance_stats(train: Objects, train_s_a: np.ndarray, border_margin: float | None) -> dict:
    """S_a's training statistics as eval.py keeps them (per border group with a margin)."""
    zero = np.zeros(len(train_s_a))  # S_r and S_p do not take part (weight 0)
    stats = score_statistics(zero, zero, train_s_a)
    if border_margin is not None:
        border = touches_border(train.boxes, train.frame_size, border_margin)
        stats["groups"] = border_statistics(zero, zero, border, border_margin, train_s_a)
    return stats


def appearance_auroc(
    protocol: FrameProtocol,
    border_margin: float | None,
    stats: dict,
    bank: AppearanceBank,
    test: Objects,
) -> dict:
    """Micro and macro AUROC (%) of S_a alone on `test`, fused as eval.py fuses it (training
    `stats` of `appearance_stats`, border groups with a `border_margin`)."""
    s_a = bank.novelty(test.crops)
    zero = np.zeros(len(s_a))
    border = None
    if border_margin is not None:
        border = touches_border(test.boxes, test.frame_size, border_margin)
    obj = fuse_scores(zero, zero, stats, 0.0, 0.0, border=border, s_a=s_a, w_a=1.0)
    empty = empty_frame_score(stats, 0.0, 0.0, grouped=border is not None, w_a=1.0)
    _, smoothed = protocol.frame_scores(
        obj, test.video_idx, test.frame_idx, test.num_frames, empty, test.boxes
    )
    keep = [lab is not None for lab in test.labels]
    summary = auroc_summary(
        [s for s, k in zip(smoothed, keep) if k], [lab for lab, k in zip(test.labels, keep) if k]
    )
    return {k: round(100 * summary[k], 2) for k in ("micro_auroc", "macro_auroc")}


def sweep(cfg, weights, work: Path | None) -> dict:
    """S_a alone for each `eval.appearance_hog` in `weights`; the stand-in's frames are written
    under `work` (None: no stand-in)."""
    for weight in weights:
        if not 0 <= weight < 1:
            raise ValueError(f"--hog {weight}: eval.appearance_hog must be a number in [0, 1)")
    source = CubeSource.from_config(cfg)
    train = cube_objects(source, cfg.data.train_split, None)
    test = cube_objects(source, cfg.data.test_split, LabelSource.from_config(cfg))
    standin = None if work is None else standin_from_config(cfg, work)
    protocol = FrameProtocol.from_config(cfg)
    margin = float(cfg.eval.border_margin) if cfg.eval.border_stats else None
    rows = []
    for weight in weights:
        bank, train_s_a = training_bank(
            train.crops,
            train.video_idx,
            train.videos,
            cfg.train.val_videos,
            cfg.eval.appearance_k,
            weight,
        )
        stats = appearance_stats(train, train_s_a, margin)
        score = functools.partial(appearance_auroc, protocol, margin, stats, bank)
        row = {"appearance_hog": weight, "test": score(test)}
        line = (
            f"appearance_hog {weight}: labelled test videos micro {row['test']['micro_auroc']} % "
            f"(macro {row['test']['macro_auroc']} %)"
        )
        if standin is not None:
            row["standin"] = score(standin)
            line += f", stand-in {row['standin']['micro_auroc']} %"
        rows.append(row)
        print(line)
    return {"config": cfg.config_file, "appearance_k": cfg.eval.appearance_k, "rows": rows}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cfg", required=True, help="a config with pre-processed cubes")
    parser.add_argument("--hog", type=float, nargs="+", default=[0.0, 0.3, 0.5, 0.7])
    parser.add_argument("--out", type=Path, default=Path("results/appearance_sweep.json"))
    parser.add_argument("--work", type=Path, default=Path("runs/appearance_sweep"))
    parser.add_argument("--no-standin", action="store_true", help="labelled test videos only")
    args = parser.parse_args(argv)
    cfg = load_config(args.cfg)
    work = None if args.no_standin else args.work / "frames"
    write_json(args.out, sweep(cfg, args.hog, work))


if __name__ == "__main__":
    run_cli(main, "tools.appearance_sweep")
