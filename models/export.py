"""The scoring pass of a model as an ONNX graph, for ONNX Runtime and OpenVINO
(inference/runtimes.py; the command is export.py).

The graph is the fused inference copy (models/inference.py) with the memory read dense: the sparse
read picks the used slots at run time, which a static graph cannot express; the dense product
computes the same sum. Inputs `frames` [B, T+1, 3, H, W] and `flows` [B, F, 2, H, W] (B free),
outputs those of `flow_recon` [B, F, 2, H, W], `frame_pred` [B, 3, H, W] and `latent_divergence`
[B] (the CVAE's per-object KL, models/losses.py) that the model type has. Beside `model.onnx` a
`model.json` says which outputs it has and what it was made from (the checkpoint), so that a stale
export is recognised.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn

from models.inference import fuse_for_inference
from models.losses import object_divergence
from models.memory import Memory
from utils.io import read_json, write_json

INPUT_NAMES = ("frames", "flows")


class MissingPackageError(ImportError, ValueError):
    """An optional package that an export or a backend needs is not installed (a ValueError
    too, so that entry scripts print it as one line)."""


def require(module: str, purpose: str) -> None:
    """Import `module` or say in one line what needs it and how to install it."""
    try:
        __import__(module)
    except ImportError as error:
        raise MissingPackageError(
            f"{purpose} needs the package {module!r}: pip install {module} "
            "(or pip install -r requirements.txt)"
        ) from error


def graph_outputs(model: nn.Module) -> tuple[str, ...]:
    """The outputs an HF2VAD of this kind has: flow_recon (with an ML-MemAE-SC), frame_pred and
    latent_divergence (with a frame predictor)."""
    names = []
    if getattr(model, "memae", None) is not None:
        names.append("flow_recon")
    if getattr(model, "cvae", None) is not None:
        names += ["frame_pred", "latent_divergence"]
    return tuple(names)


class ExportGraph(nn.Module):
    """forward(frames, flows) -> the tuple of `graph_outputs(model)` of a fused copy."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.outputs = graph_outputs(model)
        self.model = fuse_for_inference(model)
        for module in self.model.modules():
            if isinstance(module, Memory):
                module.sparse_read = False

    def forward(self, frames: torch.Tensor, flows: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.model(frames, flows)
        out["latent_divergence"] = object_divergence(out)
        return tuple(out[name] for name in self.outputs)


def export_onnx(
    model: nn.Module,
    path: str | Path,
    frames: torch.Tensor,
    flows: torch.Tensor,
    metadata: dict | None = None,
) -> Path:
    """Write the scoring graph of `model` (float32, on the CPU) to `path`, traced with the
    example `frames` and `flows` (any batch size; the exported batch size is free), and
    `metadata` (JSON values) plus the output names to its sidecar (`metadata_path`)."""
    for module in ("onnx", "onnxscript"):
        require(module, "exporting to ONNX")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    graph = ExportGraph(model).cpu().float().eval()  # a fused copy: `model` stays as it is
    batch = {0: "batch"}
    axes = {name: batch for name in INPUT_NAMES + graph.outputs}
    tmp = path.with_name(path.name + ".tmp")
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's notes on dynamic_axes and opsets
        torch.onnx.export(
            graph,
            (frames.cpu().float(), flows.cpu().float()),
            str(tmp),
            input_names=list(INPUT_NAMES),
            output_names=list(graph.outputs),
            dynamic_axes=axes,
            dynamo=True,
            external_data=False,
            verbose=False,
        )
    tmp.replace(path)
    write_json(metadata_path(path), {"outputs": list(graph.outputs), **(metadata or {})})
    return path


def metadata_path(path: str | Path) -> Path:
    """The sidecar JSON of an exported graph: model.onnx -> model.json."""
    return Path(path).with_suffix(".json")


def read_metadata(path: str | Path) -> dict:
    """What `export_onnx` recorded beside `path` ({} when the sidecar is missing)."""
    sidecar = metadata_path(path)
    return read_json(sidecar) if sidecar.is_file() else {}
