"""Live scoring speed: a Ped2 test video played as a live stream at its frame rate.

    python -m bench.bench_live --run runs/ped2_cpu [--video 01] [--fps 10] [--threads 2]

The video's JPEGs are written to a temporary MP4 and read by `inference.live.FrameGrabber` in
real time (`--realtime`, as a camera delivers them); the trained run scores them live
(`inference.live.run_live`). Reports the frames read and scored per second, the frames skipped
because the model fell behind, and the latency from capture to each frame's final smoothed
score (which includes the median filter's wait of window // 2 frames). Ped2 was filmed at 10
frames/s; `--fps` plays it faster to find where skipping starts.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import cv2

from bench.common import base_parser, print_table, save, setup
from datasets.frames import open_video
from inference.live import FrameGrabber, run_live
from inference.trained_run import load_trained_run


def write_mp4(video, path: Path, fps: float) -> None:
    height, width = video.frame_size
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    for frame in video.frames():
        writer.write(frame[..., ::-1])
    writer.release()


def main() -> None:
    parser = base_parser("bench_live", __doc__.split("\n")[0])
    parser.add_argument("--run", required=True, help="a trained run directory")
    parser.add_argument("--video", default="01", help="Ped2 test video")
    parser.add_argument(
        "--fps", type=float, action="append", help="playback rates (default: 10 and 25)"
    )
    parser.add_argument("--buffer-frames", type=int, default=16)
    args = parser.parse_args()
    device = setup(args)
    det = load_trained_run(args.run, device=str(device))
    cfg = det.cfg
    folder = Path(cfg.data.root) / cfg.data.dataset / cfg.data.test_split / cfg.data.frames_dir
    if not (folder / args.video).is_dir():
        print(f"bench_live: {folder / args.video} not found (the Ped2 data); nothing to do")
        sys.exit(0)
    video = open_video(folder / args.video)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_live_") as tmp:
        for fps in args.fps or [10.0, 25.0]:
            path = Path(tmp) / f"{args.video}_{fps:g}.mp4"
            write_mp4(video, path, fps)
            grabber = FrameGrabber(str(path), args.buffer_frames, realtime=True)
            summary = run_live(
                det, grabber, Path(tmp) / "out", str(Path(tmp) / "o.jsonl"), handle_signals=False
            )
            rows.append(
                {
                    "name": f"played at {fps:g} frames/s",
                    "unit": "frames/s",
                    "per_second": summary["frames_scored"] / summary["seconds"],
                    "median_seconds": summary["seconds"],
                    "frames_read": summary["frames_read"],
                    "frames_scored": summary["frames_scored"],
                    "frames_skipped": summary["frames_skipped"],
                    "latency_s": summary["latency_s"],
                }
            )
    print_table(rows, f"live scoring of Ped2 test video {args.video} ({video.num_frames} frames)")
    for row in rows:
        print(
            f"{row['name']}: {row['frames_skipped']} of {row['frames_read']} frames skipped, "
            f"latency median {row['latency_s']['median']} s, p95 {row['latency_s']['p95']} s"
        )
    settings = {"run": args.run, "video": args.video, "buffer_frames": args.buffer_frames}
    save(args, device, rows, settings)


if __name__ == "__main__":
    main()
