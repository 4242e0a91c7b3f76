"""Shared pieces of the benchmarks: arguments, timing, machine description, table and JSON."""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import torch

from utils.io import write_json
from utils.misc import resolve_device

RESULTS_DIR = Path("bench/results")


def base_parser(name: str, description: str) -> argparse.ArgumentParser:
    """--device, --threads, --repeats, --warmup, --quick, --out (default bench/results/<name>)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    parser.add_argument(
        "--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)"
    )
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats (median reported)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs before timing")
    parser.add_argument("--quick", action="store_true", help="smaller workload, under 2 minutes")
    parser.add_argument("--note", default="", help="free text stored with the results")
    parser.add_argument("--out", default=str(RESULTS_DIR / f"{name}.json"), help="JSON output")
    return parser


def setup(args) -> torch.device:
    """Apply --threads (torch and OpenCV) and return the device."""
    if args.threads > 0:
        torch.set_num_threads(args.threads)
        cv2.setNumThreads(args.threads)
    return resolve_device(args.device)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_call(fn: Callable[[], object], device, repeats: int, warmup: int) -> list[float]:
    """Seconds of each of `repeats` calls of fn after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
    synchronize(device)
    seconds = []
    for _ in range(repeats):
        tic = time.perf_counter()
        fn()
        synchronize(device)
        seconds.append(time.perf_counter() - tic)
    return seconds


def interleaved(calls: dict, repeats: int, warmup: int) -> dict[str, list[float]]:
    """Seconds of each call, timed in turn (a, b, a, b, ...) after `warmup` untimed calls each,
    so that every variant meets the same machine load."""
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


def rate_entry(name: str, items: int, unit: str, seconds: list[float], **extra) -> dict:
    """A result row: items per second from the median time of one call handling `items`."""
    median = statistics.median(seconds)
    return {
        "name": name,
        "unit": unit,
        "per_second": items / median,
        "items_per_call": items,
        "median_seconds": median,
        "seconds": seconds,
        **extra,
    }


def machine(device: torch.device) -> dict:
    """What the numbers were measured on."""
    info = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu": _cpu_model(),
        "cpu_flags": cpu_flags(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_average_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "device": str(device),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


# Instruction sets that decide which kernels run (bf16 and int8 matrix units, vector widths).
CPU_FLAGS = ("amx_bf16", "amx_int8", "amx_tile", "avx512_bf16", "avx512_vnni", "avx512f", "avx2")


def cpu_flags() -> list[str]:
    """Which of CPU_FLAGS this CPU has (from /proc/cpuinfo; empty where it cannot be read)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                have = set(line.split(":", 1)[1].split())
                return [flag for flag in CPU_FLAGS if flag in have]
    except OSError:
        pass
    return []


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def print_table(rows: list[dict], title: str) -> None:
    """name | rate | unit | median seconds per call."""
    print(f"\n{title}")
    width = max([len(r["name"]) for r in rows] + [4])
    print(f"| {'name':<{width}} | {'per second':>10} | unit    | median s/call |")
    print(f"|{'-' * (width + 2)}|{'-' * 12}|---------|---------------|")
    for r in rows:
        print(
            f"| {r['name']:<{width}} | {r['per_second']:>10.1f} | {r['unit']:<7} | "
            f"{r['median_seconds']:>13.3f} |"
        )


def save(args, device, rows: list[dict], settings: dict) -> None:
    """Write {machine, settings, results} to args.out."""
    doc = {
        "machine": machine(device),
        "settings": {**settings, "quick": args.quick, "repeats": args.repeats},
        "note": args.note,
        "results": rows,
    }
    write_json(args.out, doc)
    print(f"\nwritten to {args.out}")
