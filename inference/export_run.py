"""Export a trained run's scoring graph to ONNX and check that every backend computes the same
object scores as PyTorch (run by export.py, whose docstring describes the command)."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch

from datasets.cubes import CubeDataset, CubeSource
from inference.runtimes import exported_model
from inference.trained_run import ExportShape, export_for_scoring, export_path, load_run
from models import object_scores, scoring_model
from utils.io import write_json


def parity_cubes(
    folders: list[Path], size: int, num: int, count: int
) -> tuple[torch.Tensor, torch.Tensor, str]:
    """(frames, flows, where from): `count` evenly spaced cubes of the first cube folder that
    exists (test, then training cubes), else random cubes of `num` frames of size x size."""
    for folder in folders:
        if (folder / "manifest.json").is_file():
            dataset = CubeDataset(folder, max_cubes=count)
            items = [dataset[i] for i in range(len(dataset))]
            frames = torch.stack([item["frames"] for item in items])
            flows = torch.stack([item["flows"] for item in items])
            return frames, flows, f"{len(items)} evenly spaced cubes of {folder.name}"
    generator = torch.Generator().manual_seed(0)
    frames = torch.rand(count, num, 3, size, size, generator=generator)
    flows = torch.randn(count, num - 1, 2, size, size, generator=generator)
    return frames, flows, f"{count} random cubes (no cubes cached)"


def relative_change(scores: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """|scores - reference| / |reference|, elementwise."""
    return np.abs(scores - reference) / np.maximum(np.abs(reference), 1e-12)


def rank_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation (no ties expected in float scores)."""
    return float(np.corrcoef(np.argsort(np.argsort(a)), np.argsort(np.argsort(b)))[0, 1])


def export_run(run_dir: str | Path, overrides: Iterable[str] = (), num_cubes: int = 64) -> dict:
    """Export the run's evaluation checkpoint to <checkpoint>.onnx (anew) and compare the object
    scores (S_r, S_p, S_kl) of each installed backend with PyTorch float32 on `num_cubes` cubes.
    Writes and returns the comparison (<checkpoint>.export_check.json)."""
    cfg, model, ckpt, ckpt_path = load_run(run_dir, overrides, device="cpu")
    model.eval()
    path = export_path(ckpt_path)
    path.unlink(missing_ok=True)  # always anew: the command is also how to refresh an export
    _, metadata = export_for_scoring(model, ckpt, ckpt_path, ExportShape.from_config(cfg))
    cube_source = CubeSource.from_config(cfg)
    splits = [s for s in (cube_source.test_split, cube_source.train_split) if s]
    cubes = cfg.preprocess.cubes
    folders = [cube_source.folder(split) for split in splits]
    frames, flows, source = parity_cubes(folders, cubes.size, cubes.num_frames, num_cubes)
    reference = object_scores(scoring_model(model, fuse=False)(frames, flows))
    report = {"onnx": str(path), "bytes": path.stat().st_size, "cubes": source, "backends": {}}
    candidates = [("onnxruntime", False), ("openvino", False), ("openvino", True)]
    for backend, bf16 in candidates:
        if importlib.util.find_spec(backend) is None:
            report["backends"][backend] = "not installed"
            continue
        runner = exported_model(path, backend, metadata["outputs"], micro_batch=32, bf16=bf16)
        scores = object_scores(runner(frames, flows))
        name = f"{backend} {'bf16' if bf16 else 'float32'}"
        report["backends"][name] = {
            branch: _agreement(mine.numpy(), ref.numpy())
            for branch, mine, ref in zip(("S_r", "S_p", "S_kl"), scores, reference)
            if ref.abs().sum() > 0
        }
    write_json(ckpt_path.with_suffix(".export_check.json"), report)
    return report


def _agreement(scores: np.ndarray, reference: np.ndarray) -> dict:
    change = relative_change(scores, reference)
    return {
        "max_relative_change": float(change.max()),
        "median_relative_change": float(np.median(change)),
        "rank_correlation": rank_correlation(scores, reference),
    }


def export_text(report: dict) -> str:
    lines = [f"exported {report['onnx']} ({report['bytes'] / 1e6:.0f} MB); {report['cubes']}:"]
    for name, result in report["backends"].items():
        if isinstance(result, str):
            lines.append(f"  {name}: {result}")
            continue
        for branch, r in result.items():
            lines.append(
                f"  {name} {branch}: relative change median {r['median_relative_change']:.2e}, "
                f"max {r['max_relative_change']:.2e}; rank correlation {r['rank_correlation']:.6f}"
            )
    return "\n".join(lines)
