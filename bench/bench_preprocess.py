"""Pre-processing speed on Ped2 test videos: frames/s of each step.

    python -m bench.bench_preprocess [--videos 2] [--max-frames 180] [--threads 1]
    python -m bench.bench_preprocess --quick --threads 1      # under 2 minutes

Steps, each timed on frames already in memory (so that decoding is counted once, as "decode"):
decode (JPEG -> RGB), boxes (foreground boxes with the configured merge; detector boxes too when
preprocess.boxes.detector is set and its weights exist), flow with each estimator available
offline (DIS at every preset, Farneback; RAFT only when its weights are found), cubes (crops of 5
frames and 4 flows per box, from DIS flows stored in preprocess.flow.dtype). "stream" is the whole
of it in one pass as detect.py runs it (pre_process/stream.py: decode, boxes, DIS, cubes).
Data come from data.root (data/, or $HF2VAD_DATASETS); without them the benchmark says so.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

from bench.common import base_parser, print_table, rate_entry, save, setup, time_call
from datasets.frames import list_videos
from pre_process.boxes import BoxExtractor
from pre_process.cubes import video_cubes
from pre_process.flow import DIS_PRESETS, build_flow_estimator
from pre_process.stream import stream_cubes
from utils.config import load_config, replaced


def flow_methods() -> list[tuple[str, dict]]:
    """(label, preprocess.flow overrides) of every estimator to time."""
    methods = [(f"flow dis {p}", {"method": "dis", "dis_preset": p}) for p in DIS_PRESETS]
    methods.append(("flow farneback", {"method": "farneback"}))
    methods += [(f"flow {m}", {"method": m}) for m in ("raft_small", "raft_large")]
    return methods


def build_estimator_or_none(flow_cfg, overrides: dict, device):
    """The estimator of `preprocess.flow` with `overrides`, or None (said) when its weights are
    not found."""
    try:
        return build_flow_estimator(type(flow_cfg)(dict(flow_cfg, **overrides)), device)
    except FileNotFoundError as err:  # RAFT weights are never downloaded
        print(f"skipped {overrides['method']}: {str(err).split('. ')[0]}")
        return None


def run_flow(estimator, videos, dtype: str) -> list[np.ndarray]:
    """Flows [T, H, W, 2] of every video (flow 0 = flow 1, as first_frame: next)."""
    out = []
    for frames in videos:
        flows = [estimator(a, b).astype(dtype) for a, b in zip(frames[:-1], frames[1:])]
        out.append(np.stack([flows[0], *flows]))
    return out


def main() -> None:
    parser = base_parser("bench_preprocess", __doc__.split("\n")[0])
    parser.add_argument("--cfg", default="cfgs/ped2.yaml", help="data and pre-processing settings")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="K=V")
    parser.add_argument("--split", default="testing")
    parser.add_argument("--videos", type=int, default=2, help="first N videos of the split")
    parser.add_argument("--max-frames", type=int, default=180, help="first N frames of each")
    args = parser.parse_args()
    if args.quick:
        args.videos, args.max_frames, args.repeats = 1, min(args.max_frames, 60), 2
    cfg = load_config(Path(args.cfg), args.overrides)
    device = setup(args)
    folder = Path(cfg.data.root) / cfg.data.dataset / args.split
    if not folder.is_dir():
        print(f"bench_preprocess: {folder} not found (the Ped2 data); nothing to measure")
        sys.exit(0)
    cfg = replaced(cfg, {"data.max_frames": args.max_frames})
    videos = list_videos(cfg.data, args.split)[: args.videos]
    num_frames = sum(v.num_frames for v in videos)
    rows = []

    def timed(name: str, fn) -> object:
        result = {}

        def call():
            result["value"] = fn()

        seconds = time_call(call, device, args.repeats, args.warmup)
        rows.append(rate_entry(name, num_frames, "frames", seconds))
        return result["value"]

    frames = timed("decode", lambda: [list(v.frames()) for v in videos])
    extractor = BoxExtractor(cfg.preprocess.boxes, device)
    boxes = timed(
        f"boxes ({cfg.preprocess.boxes.merge})",
        lambda: [list(extractor.video_boxes(f)) for f in frames],
    )
    dtype = cfg.preprocess.flow.dtype
    dis_flows = None
    for label, overrides in flow_methods():
        estimator = build_estimator_or_none(cfg.preprocess.flow, overrides, device)
        if estimator is None:
            continue
        flows = timed(label, lambda estimator=estimator: run_flow(estimator, frames, dtype))
        if overrides.get("dis_preset") == cfg.preprocess.flow.dis_preset:
            dis_flows = flows
    cube_cfg = cfg.preprocess.cubes
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as pre_process.cubes.write_split_cubes does

    def cut_cubes():
        return sum(
            len(c[3])
            for f, fl, b in zip(frames, dis_flows, boxes)
            for c in video_cubes(
                iter(f), fl, b, cube_cfg.size, cube_cfg.num_frames, cube_cfg.border_aspect
            )
        )

    num_cubes = timed("cubes", cut_cubes)
    torch.set_num_threads(threads)
    dis = build_flow_estimator(type(cfg)(dict(cfg.preprocess.flow, method="dis")), device)

    def stream():
        for video in videos:
            for _ in stream_cubes(
                video.frames(),
                extractor,
                dis,
                cfg.preprocess.flow.first_frame,
                dtype,
                cube_cfg.size,
                cube_cfg.num_frames,
                cube_cfg.border_aspect,
            ):
                pass

    timed(f"stream (decode+boxes+dis {cfg.preprocess.flow.dis_preset}+cubes)", stream)
    print_table(
        rows,
        f"pre-processing, {len(videos)} {args.split} video(s), {num_frames} frames, "
        f"{num_cubes} cubes ({num_cubes / num_frames:.1f} per frame)",
    )
    settings = {
        "cfg": args.cfg,
        "overrides": args.overrides,
        "split": args.split,
        "videos": [v.name for v in videos],
        "frames": num_frames,
        "cubes": num_cubes,
        "warmup": args.warmup,
    }
    save(args, device, rows, settings)


if __name__ == "__main__":
    main()
