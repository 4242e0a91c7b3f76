"""Score your own videos with a trained run: per-frame anomaly scores, a curve, an annotated MP4.

    python detect.py --run runs/ped2 --input street.mp4 frames_folder/ [--far 0.01]
    python detect.py --run runs/ped2 --input clip.avi --threshold 2.5 --device cuda
    python detect.py --run runs/ped2 --input clip.avi --set eval.w_p=0.5 --out results/clip

Writes <out>/<input name>/: scores.csv and scores.json (raw and smoothed frame scores, the
threshold and anomalous intervals), objects.csv (every object's box and scores), curve.png and
annotated.mp4; with --save-intermediate also intermediate/ (flows.npy and the cubes). The
pipeline streams (boxes -> flow -> cubes -> model), so long videos need no more memory than
short ones. See inference/detect.py for how scores and thresholds are defined.
"""

from __future__ import annotations

import argparse
import sys

import torch

from inference.detect import DetectError, detect
from utils.config import ConfigError
from utils.fingerprint import CheckpointError


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--run", required=True, help="run directory of a trained model")
    parser.add_argument(
        "--input", required=True, nargs="+", help="video files (.mp4, .avi, ...) or frame folders"
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
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a setting of the run's config, e.g. --set eval.smoothing=gaussian",
    )
    parser.add_argument(
        "--threads", type=int, default=0, help="torch CPU threads (default: torch's choice)"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    try:
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
