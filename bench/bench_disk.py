"""Disk and time of pre-processing with and without stored flows, per 1,000 frames, and the
projection to ShanghaiTech's training set.

    python -m bench.bench_disk [--cfg cfgs/ped2.yaml] [--videos 2] [--threads 2]
    python -m bench.bench_disk --shanghaitech-standin [--videos 2] [--threads 2]

Pre-processes the first `--videos` training videos of the config's dataset twice into temporary
caches, with `preprocess.store_flows` true and false, and measures the wall time and the bytes
on disk of flows and cubes. Projects both to ShanghaiTech's 274,515 training frames, roughly:
flow disk and time scale with the frame area (856x480 against this dataset's), cube disk with
the number of frames at this dataset's boxes per frame.

With `--shanghaitech-standin` the videos are first resized to ShanghaiTech's 856x480 and written
as MJPG .avi files in its layout (training/videos/<name>.avi), and `cfgs/shanghaitech.yaml` (its
box settings, two worker processes) pre-processes them: decoding, boxes and flows then run at
the real frame size, so only the frame count is projected.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from bench.common import RESULTS_DIR, base_parser, print_table, save, setup
from bench.standins import SHANGHAITECH_FRAME, write_shanghaitech_standin
from datasets.cubes import cube_folder
from datasets.frames import list_videos
from pre_process import run_preprocess
from utils.config import load_config, replaced
from utils.io import read_json

SHANGHAITECH_TRAIN_FRAMES = 274_515


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) if folder.exists() else 0


def main() -> None:
    parser = base_parser("bench_disk", __doc__.split("\n")[0])
    parser.add_argument("--cfg", default="cfgs/ped2.yaml")
    parser.add_argument("--videos", type=int, default=2, help="first N training videos")
    parser.add_argument(
        "--shanghaitech-standin",
        action="store_true",
        help="the videos resized to 856x480, pre-processed by cfgs/shanghaitech.yaml "
        "(JSON: bench/results/bench_disk_shanghaitech.json)",
    )
    args = parser.parse_args()
    if args.shanghaitech_standin and args.out == str(RESULTS_DIR / "bench_disk.json"):
        args.out = str(RESULTS_DIR / "bench_disk_shanghaitech.json")
    device = setup(args)
    base = load_config(Path(args.cfg))
    folder = Path(base.data.root) / base.data.dataset / base.data.train_split
    if not folder.is_dir():
        print(f"bench_disk: {folder} not found; nothing to measure")
        sys.exit(0)
    names = sorted(p.name for p in (folder / base.data.frames_dir).iterdir())[: args.videos]
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_disk_") as tmp:
        if args.shanghaitech_standin:
            videos = list_videos(replaced(base, {"data.videos": names}).data, base.data.train_split)
            root = Path(tmp) / "data"
            write_shanghaitech_standin(videos, root / "shanghaitech" / "training" / "videos")
            base = load_config(Path("cfgs/shanghaitech.yaml"), [f"data.root={root}"])
        for store in (True, False):
            cache = Path(tmp) / f"store_{store}"
            cfg = replaced(
                base,
                {
                    "data.cache_dir": str(cache),
                    "data.videos": names,
                    "preprocess.store_flows": store,
                    "device": str(device),
                },
            )
            tic = time.time()
            summary = run_preprocess(cfg, splits=(cfg.data.train_split,))
            seconds = time.time() - tic
            split = summary["splits"][cfg.data.train_split]
            frames = split["frames"]
            flows, cubes = folder_bytes(cache / "flows"), folder_bytes(cache / "cubes")
            height, width = cube_frame_size(cube_folder(cache, cfg.data.train_split))
            area = SHANGHAITECH_FRAME[0] * SHANGHAITECH_FRAME[1] / (height * width)
            scale = SHANGHAITECH_TRAIN_FRAMES / frames
            rows.append(
                {
                    "name": f"store_flows={str(store).lower()}",
                    "unit": "frames",
                    "per_second": frames / seconds,
                    "median_seconds": seconds,
                    "frames": frames,
                    "seconds_per_1000_frames": 1000 * seconds / frames,
                    "flow_bytes_per_1000_frames": 1000 * flows / frames,
                    "cube_bytes_per_1000_frames": 1000 * cubes / frames,
                    "shanghaitech_flow_gb": flows * scale * area / 1e9,
                    "shanghaitech_cube_gb": cubes * scale / 1e9,
                    "shanghaitech_hours": seconds * scale * area / 3600,
                }
            )
    print_table(rows, f"pre-processing {args.videos} training videos of {base.data.dataset}")
    for row in rows:
        print(
            f"{row['name']}: {row['seconds_per_1000_frames']:.1f} s and "
            f"{(row['flow_bytes_per_1000_frames'] + row['cube_bytes_per_1000_frames']) / 1e6:.0f}"
            f" MB per 1,000 frames; ShanghaiTech training set: flows "
            f"{row['shanghaitech_flow_gb']:.0f} GB, cubes {row['shanghaitech_cube_gb']:.0f} GB, "
            f"about {row['shanghaitech_hours']:.0f} h"
        )
    settings = {"cfg": args.cfg, "videos": names}
    if args.shanghaitech_standin:
        settings.update(cfg="cfgs/shanghaitech.yaml", standin_from=args.cfg)
    save(args, device, rows, settings)


def cube_frame_size(cube_dir: Path) -> tuple[int, int]:
    """(height, width) of the frames the cubes of `cube_dir` were cut from (its manifest)."""
    return tuple(read_json(cube_dir / "manifest.json")["frame_size"])


if __name__ == "__main__":
    main()
