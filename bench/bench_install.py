"""Disk taken by the installed requirements, and how much of it is CUDA libraries.

    python -m bench.bench_install [--requirements requirements.txt]

Follows requirements.txt through the installed packages' own requirements (those that apply to
this platform) and adds up the files each installed distribution lists. The CUDA share is the
NVIDIA runtime wheels and triton, which PyPI's default torch wheels pull in and a CPU-only
torch build does without.
"""

from __future__ import annotations

import argparse
import importlib.metadata as metadata
import re
from pathlib import Path

import torch
from packaging.requirements import Requirement

from bench.common import RESULTS_DIR, machine
from utils.io import write_json

CUDA_PREFIXES = ("nvidia-", "triton", "cuda-")


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def installed_bytes(dist: metadata.Distribution) -> int:
    total = 0
    for file in dist.files or []:
        try:
            total += Path(file.locate()).stat().st_size
        except OSError:  # listed but not on disk (e.g. removed caches)
            pass
    return total


def requirement_closure(requirements: Path) -> dict[str, int]:
    """Bytes per installed distribution that requirements.txt needs, directly or not."""
    lines = [ln.split("#")[0].strip() for ln in requirements.read_text().splitlines()]
    todo = [Requirement(ln).name for ln in lines if ln]
    sizes: dict[str, int] = {}
    while todo:
        name = canonical(todo.pop())
        if name in sizes:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        sizes[name] = installed_bytes(dist)
        for text in dist.requires or []:
            req = Requirement(text)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    return sizes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requirements", type=Path, default=Path("requirements.txt"))
    parser.add_argument("--out", default=str(RESULTS_DIR / "install_size.json"))
    args = parser.parse_args()
    sizes = requirement_closure(args.requirements)
    cuda = {k: v for k, v in sizes.items() if k.startswith(CUDA_PREFIXES)}
    doc = {
        "machine": machine(torch.device("cpu")),
        "torch_cuda": torch.version.cuda,
        "distributions": len(sizes),
        "total_gb": sum(sizes.values()) / 1e9,
        "cuda_gb": sum(cuda.values()) / 1e9,
        "largest_mb": {
            k: round(v / 1e6) for k, v in sorted(sizes.items(), key=lambda kv: -kv[1])[:10]
        },
    }
    print(
        f"{doc['distributions']} distributions, {doc['total_gb']:.1f} GB, of which CUDA "
        f"libraries {doc['cuda_gb']:.1f} GB (torch {torch.__version__})"
    )
    write_json(args.out, doc)
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
