"""Our scoring against the reference execution (bench/reference.py), timed in one process.

    python -m bench.bench_reference [--threads 2] [--batch 128] [--checkpoint CKPT]

Interleaved timing (reference, ours, reference, ours, ...) of one batch of cubes at the paper's
model size (random weights, or a trained checkpoint; random cubes), so that every
speed claim is a ratio measured on the same machine at the same moment: float32 against
float32, bf16 autocast against the reference under bf16 autocast, and our fastest precision
against the reference's float32. Prints the table and writes JSON with the CPU's model and
instruction-set flags.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import torch

from bench.bench_models import random_cubes
from bench.common import base_parser, print_table, save, setup
from bench.reference import ReferenceExecution
from engine.checkpoint import load_checkpoint, restore_model
from models import build_model, scoring_model
from utils.config import load_config


def _interleaved(calls: dict, repeats: int, warmup: int) -> dict[str, list[float]]:
    for fn in calls.values():
        for _ in range(warmup):
            fn()
    seconds = {name: [] for name in calls}
    for _ in range(repeats):
        for name, fn in calls.items():
            tic = time.perf_counter()
            fn()
            seconds[name].append(time.perf_counter() - tic)
    return seconds


def main() -> None:
    parser = base_parser("bench_reference", __doc__.split("\n")[0])
    parser.add_argument("--cfg", default="cfgs/ped2.yaml")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--checkpoint", default=None, help="a trained checkpoint (else random)")
    args = parser.parse_args()
    if args.quick:
        args.batch, args.repeats, args.warmup = 32, 1, 0
    device = setup(args)
    cfg = load_config(Path(args.cfg))
    torch.manual_seed(0)
    model = build_model(cfg.model)
    if args.checkpoint:
        restore_model(model, load_checkpoint(args.checkpoint, cfg), args.checkpoint)
    model = model.to(device).eval()
    frames, flows = random_cubes(args.batch, device)
    reference = ReferenceExecution(model)
    fp32 = scoring_model(model, fuse=True, channels_last=True, micro_batch=32)
    bf16 = scoring_model(
        model, fuse=True, channels_last=True, micro_batch=32, autocast_dtype=torch.bfloat16
    )

    def reference_bf16():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return reference(frames, flows)

    calls = {
        "reference float32": lambda: reference(frames, flows),
        "ours float32": lambda: fp32(frames, flows),
        "reference bf16 autocast": reference_bf16,
        "ours bf16 autocast": lambda: bf16(frames, flows),
    }
    seconds = _interleaved(calls, args.repeats, args.warmup)
    medians = {name: statistics.median(s) for name, s in seconds.items()}
    ratios = {
        "ours/reference float32": medians["reference float32"] / medians["ours float32"],
        "ours/reference bf16": medians["reference bf16 autocast"] / medians["ours bf16 autocast"],
        "ours bf16/reference float32": medians["reference float32"] / medians["ours bf16 autocast"],
    }
    rows = [
        {
            "name": name,
            "unit": "cubes",
            "per_second": args.batch / medians[name],
            "median_seconds": medians[name],
            "seconds": seconds[name],
        }
        for name in calls
    ]
    print_table(rows, f"scoring {args.batch} cubes: reference execution vs ours, interleaved")
    for name, ratio in ratios.items():
        print(f"{name}: {ratio:.2f}x")
    settings = {"cfg": args.cfg, "batch": args.batch, "checkpoint": args.checkpoint}
    save(args, device, rows + [{"name": k, "ratio": v} for k, v in ratios.items()], settings)


if __name__ == "__main__":
    main()
