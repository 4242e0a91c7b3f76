"""End-to-end speed: JPEG frames -> anomaly score per frame, as detect.py runs it.

    python -m bench.bench_end_to_end [--video 01] [--max-frames 120] [--threads 1]
    python -m bench.bench_end_to_end --quick --threads 1      # under 2 minutes

A run directory with an untrained model of the paper's size and made-up training statistics is
made in a temporary folder (weights do not change the speed), then `inference.detect.detect_video`
scores the first --max-frames frames of a Ped2 test video: decoding, foreground boxes, DIS flow,
cubes, the model in batches of eval.batch_size, fusion, smoothing and every output file
(scores.csv/json, objects.csv, curve.png, annotated.mp4). Each variant is the run's config plus
--set overrides: "float32" as configured, "low precision" adds eval.bf16_cpu=true (CPU) or
eval.amp=true (CUDA). Data come from data.root (data/, or $HF2VAD_DATASETS); absent data: a
message, exit 0.
With --run RUN_DIR a trained run is scored instead: as trained (its own backend and precision),
with OpenVINO in bf16, and the same without pre-processing on a thread beside the model
(eval.prefetch_frames=0); training statistics missing for a variant are computed first (they
need the run's training cubes).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import torch

from bench.common import base_parser, print_table, rate_entry, save, setup, time_call
from datasets.frames import open_video
from engine.checkpoint import load_checkpoint, save_checkpoint
from inference.detect import detect_video, limit_frames
from inference.trained_run import load_trained_run
from models import build_model
from scoring.statistics import ScoringSettings
from utils.config import load_config, save_config
from utils.io import write_json

MADE_UP_STATS = {"mean_r": 50.0, "std_r": 40.0, "mean_p": 300.0, "std_p": 100.0, "num_cubes": 1}


def make_run(root: Path, cfg_path: str, overrides: list[str]) -> tuple[Path, Path]:
    """An untrained hybrid run at root/run (stage3/best.pth, config.yaml); returns (run, ckpt)."""
    cfg = load_config(
        Path(cfg_path), overrides + [f"run_dir={root / 'run'}", f"data.cache_dir={root / 'c'}"]
    )
    torch.manual_seed(0)
    model = build_model(cfg.model)
    path = root / "run" / "stage3" / "best.pth"
    save_checkpoint(path, {"model": model.state_dict(), "epoch": 0, "step": 0}, cfg, "hf2vad")
    save_config(cfg, root / "run" / "config.yaml")
    return root / "run", path


def write_stats(run_dir: Path, ckpt_path: Path, overrides: list[str], device) -> None:
    """Made-up training statistics that the variant's identity (precision included) accepts."""
    cfg = load_config(run_dir / "config.yaml", overrides)
    settings = ScoringSettings.from_config(cfg, device)
    identity = settings.identity(load_checkpoint(ckpt_path))
    write_json(settings.stats_path(ckpt_path), {**MADE_UP_STATS, "checkpoint": identity})


def timed_detect(det, video, out: Path, name: str, device, args) -> dict:
    docs = []

    def score():
        docs.append(detect_video(det, video, out, progress=False))

    seconds = time_call(score, device, args.repeats, args.warmup)
    entry = rate_entry(f"detect_video {name}", video.num_frames, "frames", seconds)
    entry["objects"] = docs[-1]["num_objects"]
    entry["cubes_per_second"] = entry["objects"] / entry["median_seconds"]
    return entry


def untrained_rows(video, tmp: Path, device, args) -> list[dict]:
    low = "eval.amp=true" if device.type == "cuda" else "eval.bf16_cpu=true"
    variants = {"float32": [], f"low precision ({low})": [low]}
    run_dir, ckpt_path = make_run(tmp, args.cfg, args.overrides)
    rows = []
    for name, extra in variants.items():
        write_stats(run_dir, ckpt_path, extra, device)
        det = load_trained_run(run_dir, extra, str(device))
        rows.append(timed_detect(det, video, tmp / "out" / name.split()[0], name, device, args))
    return rows


TRAINED_VARIANTS = {  # name: overrides on top of the run's config (and --set)
    "as trained": [],
    "openvino bf16": ["eval.backend=openvino", "eval.bf16_cpu=true"],
    "openvino bf16, no prefetch": [
        "eval.backend=openvino",
        "eval.bf16_cpu=true",
        "eval.prefetch_frames=0",
    ],
}


def trained_rows(run_dir: Path, video, tmp: Path, device, args) -> list[dict]:
    rows = []
    for name, extra in TRAINED_VARIANTS.items():
        try:
            det = load_trained_run(run_dir, args.overrides + extra, str(device))
        except ImportError as error:
            print(f"bench_end_to_end: {name} skipped ({error})")
            continue
        label = f"trained {run_dir.name}, {name}"
        out = tmp / "out" / name.replace(" ", "_").replace(",", "")
        rows.append(timed_detect(det, video, out, label, device, args))
    return rows


def main() -> None:
    parser = base_parser("bench_end_to_end", __doc__.split("\n")[0])
    parser.add_argument("--cfg", default="cfgs/ped2.yaml", help="model, data and eval settings")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="K=V")
    parser.add_argument("--video", default="01", help="Ped2 test video")
    parser.add_argument("--max-frames", type=int, default=120, help="first N frames")
    parser.add_argument("--run", help="score with this trained run directory instead")
    args = parser.parse_args()
    if args.quick:
        args.max_frames, args.repeats, args.warmup = min(args.max_frames, 30), 1, 0
    device = setup(args)
    base = load_config(Path(args.cfg), args.overrides)
    folder = Path(base.data.root) / base.data.dataset / base.data.test_split / base.data.frames_dir
    if not (folder / args.video).is_dir():
        print(f"bench_end_to_end: {folder / args.video} not found (the Ped2 data); nothing to do")
        sys.exit(0)
    video = limit_frames(open_video(folder / args.video), args.max_frames)
    with tempfile.TemporaryDirectory(prefix="bench_e2e_") as tmp:
        if args.run:
            rows = trained_rows(Path(args.run), video, Path(tmp), device, args)
        else:
            rows = untrained_rows(video, Path(tmp), device, args)
    print_table(
        rows, f"JPEG -> frame score, Ped2 test video {args.video}, {video.num_frames} frames"
    )
    for row in rows:
        print(
            f"{row['name']}: {row['objects']} objects "
            f"({row['objects'] / video.num_frames:.1f} per frame), "
            f"{row['cubes_per_second']:.1f} cubes/s"
        )
    settings = {
        "cfg": args.cfg,
        "overrides": args.overrides,
        "video": args.video,
        "frames": video.num_frames,
        "batch_size": base.eval.batch_size,
        "warmup": args.warmup,
        "run": args.run,
    }
    save(args, device, rows, settings)


if __name__ == "__main__":
    main()
