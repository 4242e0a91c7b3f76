"""Scoring with an exported graph (models/export.py) in ONNX Runtime or OpenVINO instead of
PyTorch (`eval.backend`), behind the same call as models.ScoringModel:
model(frames, flows) -> the output dict of HF2VAD (flow_recon, flow_target, frame_pred,
frame_target; None for a branch the model type lacks).

OpenVINO runs in float32, or with `bf16` in bfloat16 where the CPU has bf16 units (AMX,
AVX-512 BF16): its own kernels, the fastest path here (bench/bench_reference.py).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from models.export import require
from models.hybrid import empty_output


class ExportedModel:
    """An exported graph run on micro-batches of `micro_batch` cubes (0 = whole batches);
    `run(frames, flows)` (float32 arrays) returns the graph's outputs by name."""

    def __init__(self, run, micro_batch: int = 0) -> None:
        self._run = run
        self.micro_batch = micro_batch

    def eval(self) -> ExportedModel:  # always in test mode, as ScoringModel
        return self

    def __call__(self, frames: torch.Tensor, flows: torch.Tensor) -> dict:
        size = self.micro_batch if self.micro_batch > 0 else max(len(frames), 1)
        frames_np = frames.detach().cpu().float().numpy()
        flows_np = flows.detach().cpu().float().numpy()
        parts = [
            self._run(frames_np[i : i + size], flows_np[i : i + size])
            for i in range(0, len(frames_np), size)
        ]
        out = empty_output(frames, flows)
        for name in parts[0] if parts else ():
            joined = np.concatenate([part[name] for part in parts])
            out[name] = torch.from_numpy(joined).to(frames.device)
        return out


def onnxruntime_run(path: Path, threads: int, outputs: list[str]):
    require("onnxruntime", "eval.backend=onnxruntime")
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def run(frames: np.ndarray, flows: np.ndarray) -> dict:
        values = session.run(outputs, {"frames": frames, "flows": flows})
        return dict(zip(outputs, values))

    return run


def openvino_run(path: Path, threads: int, outputs: list[str], bf16: bool):
    require("openvino", "eval.backend=openvino")
    import openvino as ov

    config = {
        "INFERENCE_NUM_THREADS": threads,
        "INFERENCE_PRECISION_HINT": "bf16" if bf16 else "f32",
        "PERFORMANCE_HINT": "LATENCY",
    }
    compiled = ov.Core().compile_model(str(path), "CPU", config)
    request = compiled.create_infer_request()

    def run(frames: np.ndarray, flows: np.ndarray) -> dict:
        result = request.infer({"frames": frames, "flows": flows})
        return {name: np.array(result[compiled.output(name)]) for name in outputs}

    return run


def exported_model(
    path: str | Path,
    backend: str,
    outputs: list[str],
    threads: int = 0,
    micro_batch: int = 0,
    bf16: bool = False,
) -> ExportedModel:
    """The graph at `path` (with these output names) in `backend`, on `threads` CPU threads
    (0 = torch's current number)."""
    threads = threads or torch.get_num_threads()
    path = Path(path)
    if backend == "onnxruntime":
        if bf16:
            raise ValueError(
                "eval.backend=onnxruntime scores in float32 only: set eval.bf16_cpu=false, or "
                "use eval.backend=openvino for bf16"
            )
        return ExportedModel(onnxruntime_run(path, threads, outputs), micro_batch)
    if backend == "openvino":
        return ExportedModel(openvino_run(path, threads, outputs, bf16), micro_batch)
    raise ValueError(f"no exported-graph backend {backend!r} (onnxruntime or openvino)")
