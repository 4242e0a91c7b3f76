"""Score your own videos with a trained run: per-frame anomaly scores, a curve, an annotated MP4.

    python detect.py --run runs/ped2 --input street.mp4 frames_folder/ [--far 0.01]
    python detect.py --run runs/ped2 --input clip.avi --threshold 2.5 --device cuda
    python detect.py --run runs/ped2 --input clip.avi --set eval.w_p=0.5 --out results/clip
    python detect.py --run runs/ped2 --input 0 --far 0.01          # live: camera 0
    python detect.py --run runs/ped2 --input rtsp://cam/stream --jsonl events.jsonl

Writes <out>/<input name>/: scores.csv and scores.json (raw and smoothed frame scores, the
threshold and anomalous intervals), objects.csv (every object's box and scores), curve.png and
annotated.mp4; with --save-intermediate also intermediate/ (flows.npy and the cubes). The
pipeline streams (boxes -> flow -> cubes -> model), so long videos need no more memory than
short ones. See inference/detect.py for how scores and thresholds are defined, and
inference/live.py for live sources (a camera index, a stream URL, or a file with --live): one JSON
line per frame as it is scored, frames skipped deliberately when the model falls behind, a
dropped stream reopened, Ctrl-C or SIGTERM a clean stop with <out>/live_summary.json.
"""

from __future__ import annotations

import argparse
import sys

import torch

from inference.detect import DetectError, detect
from inference.live import detect_live, is_live_input
from utils.cli import add_override_option
from utils.config import ConfigError
from utils.fingerprint import CheckpointError


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--run", required=True, help="run directory of a trained model")
    parser.add_argument(
        "--input",
        required=True,
        nargs="+",
        help="video files (.mp4, .avi, ...) or frame folders; or one live source: a camera "
        "index (0), a stream URL (rtsp://, http://) or a file with --live",
    )
    parser.add_argument("--out", default=None, help="output folder (default: <run>/detect)")
    limit = parser.add_mutually_exclusive_group()
    limit.add_argument(
        "--threshold",
        type=float,
        help="anomalous when the smoothed score > this (without --threshold or --far no frame "
        "is called anomalous: scores are written, but no 'anomalous' column or intervals)",
    )
    limit.add_argument(
        "--far",
        type=float,
        help="false-alarm rate on the training frames that sets the threshold, e.g. 0.01",
    )
    parser.add_argument("--device", default=None, help="cpu | cuda | cuda:N (default: config)")
    parser.add_argument(
        "--fps", type=float, default=None, help="frame rate (default: the file's; folders: 25)"
    )
    parser.add_argument("--max-frames", type=int, default=0, help="score only the first N frames")
    parser.add_argument(
        "--save-intermediate", action="store_true", help="also write flows.npy and the cubes"
    )
    add_override_option(parser, "eval.smoothing=gaussian")
    parser.add_argument(
        "--threads", type=int, default=0, help="torch CPU threads (default: torch's choice)"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    live = parser.add_argument_group("live sources")
    live.add_argument("--live", action="store_true", help="score the input as a live source")
    live.add_argument(
        "--follow", action="store_true", help="live file: wait for frames appended to it"
    )
    live.add_argument(
        "--realtime", action="store_true", help="live file: read it at its frame rate"
    )
    live.add_argument(
        "--jsonl", default=None, help="JSON lines to this file (default: standard output)"
    )
    live.add_argument(
        "--buffer-frames",
        type=int,
        default=16,
        help="frames waiting for the model at most; when full they are skipped (counted)",
    )
    live.add_argument(
        "--segment-seconds", type=float, default=0.0, help="rolling annotated MP4s of this length"
    )
    live.add_argument(
        "--max-seconds", type=float, default=0.0, help="stop after this long (0 = never)"
    )
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    try:
        if args.live or any(is_live_input(text) for text in args.input):
            if len(args.input) != 1:
                raise DetectError("a live source is scored alone: give one --input")
            detect_live(
                args.run,
                args.input[0],
                out_dir=args.out,
                threshold=args.threshold,
                far=args.far,
                device=args.device,
                overrides=args.overrides,
                jsonl=args.jsonl,
                realtime=args.realtime,
                follow=args.follow,
                buffer_frames=args.buffer_frames,
                segment_seconds=args.segment_seconds,
                max_seconds=args.max_seconds,
            )
            return 0
        detect(
            args.run,
            args.input,
            out_dir=args.out,
            threshold=args.threshold,
            far=args.far,
            device=args.device,
            overrides=args.overrides,
            fps=args.fps,
            max_frames=args.max_frames,
            save_intermediate=args.save_intermediate,
            progress=not args.quiet,
        )
    except (DetectError, CheckpointError, ConfigError, FileNotFoundError, ValueError) as err:
        print(f"detect.py: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
