"""Our scoring against the reference execution (bench/reference.py), timed in one process.

    python -m bench.bench_reference [--threads 2] [--batch 128] [--checkpoint CKPT]

Interleaved timing (reference, ours, reference, ours, ...) of one batch of cubes at the paper's
model size (random weights, or a trained checkpoint; random cubes), so that every
speed claim is a ratio measured on the same machine at the same moment: float32 against
float32, bf16 autocast against the reference under bf16 autocast, and our fastest precision
against the reference's float32. Ours runs in PyTorch and, when installed, as the exported graph
(models/export.py) in ONNX Runtime (float32) and OpenVINO (float32 and bf16); the ratios take
our fastest at each precision. Prints the table and writes JSON with the CPU's model and
instruction-set flags.
"""

from __future__ import annotations

import statistics
import tempfile
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from bench.bench_models import matmul_rows, random_cubes
from bench.common import base_parser, interleaved, print_table, save, setup
from bench.reference import ReferenceExecution
from engine.checkpoint import load_checkpoint, restore_model
from inference.runtimes import exported_model
from models import build_model, scoring_model
from models.export import ExportGraph, export_onnx, graph_outputs
from utils.config import load_config


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
    with tempfile.TemporaryDirectory(prefix="bench_reference_") as tmp:
        calls.update(exported_calls(model, Path(tmp) / "model.onnx", frames, flows))
        seconds = interleaved(calls, args.repeats, args.warmup)
    medians = {name: statistics.median(s) for name, s in seconds.items()}
    best_fp32 = min(v for k, v in medians.items() if k.startswith("ours") and "float32" in k)
    best_bf16 = min(v for k, v in medians.items() if k.startswith("ours") and "bf16" in k)
    fastest = min(v for k, v in medians.items() if k.startswith("ours"))
    ratios = {
        "ours/reference float32": medians["reference float32"] / best_fp32,
        "ours/reference bf16": medians["reference bf16 autocast"] / best_bf16,
        "ours fastest/reference float32": medians["reference float32"] / fastest,
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
    gflop = gflop_per_cube(model, frames[:4], flows[:4])
    ceiling = matmul_rows(args, device)
    for row in ceiling:
        print(f"{row['name']}: {row['per_second']:.0f} GFLOP/s (this machine's ceiling)")
    print(f"one cube, dense memory read: {gflop:.2f} GFLOP")
    settings = {"cfg": args.cfg, "batch": args.batch, "checkpoint": args.checkpoint}
    extra = [{"name": k, "ratio": v} for k, v in ratios.items()]
    extra.append({"name": "GFLOP per cube (dense memory read)", "gflop": gflop})
    save(args, device, rows + extra + ceiling, settings)


def gflop_per_cube(model, frames, flows) -> float:
    """Multiply-adds x 2 of one cube in test mode, the memory read dense (as exported)."""
    graph = ExportGraph(model)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        graph(frames, flows)
    return counter.get_total_flops() / len(frames) / 1e9


def exported_calls(model, path: Path, frames, flows) -> dict:
    """Our exported graph in each installed backend (none without onnx and onnxscript)."""
    try:
        export_onnx(model, path, frames[:2], flows[:2])
    except ImportError as error:
        print(f"bench_reference: no exported graph ({error})")
        return {}
    outputs = list(graph_outputs(model))
    calls = {}
    for name, backend, bf16 in (
        ("ours onnxruntime float32", "onnxruntime", False),
        ("ours openvino float32", "openvino", False),
        ("ours openvino bf16", "openvino", True),
    ):
        try:
            runner = exported_model(path, backend, outputs, micro_batch=32, bf16=bf16)
        except ImportError as error:
            print(f"bench_reference: {name} skipped ({error})")
            continue
        calls[name] = lambda runner=runner: runner(frames, flows)
    return calls


if __name__ == "__main__":
    main()
