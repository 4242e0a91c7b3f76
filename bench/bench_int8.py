"""Is int8 worth shipping? A trained run's exported graph with its convolutions quantised to int8
(ONNX Runtime's static QDQ quantisation, calibrated on training cubes), run by OpenVINO, against
the float32 graph: speed, and how far the object scores move.

    python -m bench.bench_int8 --run runs/ped2_cpu [--threads 2] [--cap-isa AVX512_CORE_BF16]

Variants quantise the convolutions of the whole model, of ML-MemAE-SC only (the nodes that
`flow_recon` depends on) or of the CVAE only (the rest); the memory read-out (matrix products
and softmax) stays in floating point. Activations are unsigned 8-bit with a zero point, weights
signed 8-bit per output channel, the usual x86 setting. Agreement is measured on evenly spaced
test cubes (no labels): the rank correlation and relative change of S_r and S_p against float32,
against the targets of 0.999 rank correlation that any shipped precision must meet. With
--cap-isa the same timings are repeated in a child process whose oneDNN (torch's and
OpenVINO's) may use instructions up to that level only: AVX512_CORE_BF16 stands in for an
AVX-512 machine without AMX.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from bench.common import base_parser, interleaved, print_table, rate_entry, save, setup
from datasets import CubeDataset, CubeSource
from inference.export_run import rank_correlation, relative_change
from inference.runtimes import exported_model
from inference.trained_run import ExportShape, export_for_scoring, load_run
from models import object_scores

PARTS = ("all", "ml_memae_sc", "cvae")
EXECUTIONS = {  # name: (graph, OpenVINO bf16 hint)
    "float32": ("float", False),
    "bf16": ("float", True),
}


def quantisable_nodes(model_path: Path) -> dict[str, list[str]]:
    """Names of the Conv / ConvTranspose nodes of each part (PARTS) of the exported graph."""
    import onnx

    graph = onnx.load(str(model_path), load_external_data=False).graph
    producer = {out: node for node in graph.node for out in node.output}

    def ancestors(tensor: str) -> set[str]:
        seen, todo = set(), [tensor]
        while todo:
            node = producer.get(todo.pop())
            if node is not None and node.name not in seen:
                seen.add(node.name)
                todo.extend(node.input)
        return seen

    convs = [n.name for n in graph.node if n.op_type in ("Conv", "ConvTranspose")]
    memae = ancestors("flow_recon")
    return {
        "all": convs,
        "ml_memae_sc": [n for n in convs if n in memae],
        "cvae": [n for n in convs if n not in memae],
    }


def evenly_spaced_cubes(dataset) -> tuple[torch.Tensor, torch.Tensor]:
    """frames and flows of every cube of `dataset` (opened with max_cubes: evenly spaced)."""
    items = [dataset[i] for i in range(len(dataset))]
    return (
        torch.stack([item["frames"] for item in items]),
        torch.stack([item["flows"] for item in items]),
    )


def quantise(model_path: Path, out_path: Path, nodes: list[str], calibration, batch: int = 16):
    """Static QDQ int8 quantisation of `nodes`, calibrated on (frames, flows) of training."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    frames, flows = (t.numpy() for t in calibration)

    class Batches(CalibrationDataReader):
        def __init__(self):
            self.batches = iter(
                {"frames": frames[i : i + batch], "flows": flows[i : i + batch]}
                for i in range(0, len(frames), batch)
            )

        def get_next(self):
            return next(self.batches, None)

    quantize_static(
        str(model_path),
        str(out_path),
        Batches(),
        quant_format=QuantFormat.QDQ,
        op_types_to_quantize=["Conv", "ConvTranspose"],
        nodes_to_quantize=nodes,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
    )


def graphs(args, workdir: Path) -> tuple[dict[str, Path], list[str], CubeSource]:
    """The run's float32 graph and the int8 graphs (in `workdir`) of the parts it has, the
    output names and where the run's cubes are."""
    cfg, model, ckpt, ckpt_path = load_run(args.run, device="cpu")
    path, metadata = export_for_scoring(model.eval(), ckpt, ckpt_path, ExportShape.from_config(cfg))
    cubes = CubeSource.from_config(cfg)
    calibration = evenly_spaced_cubes(cubes.open(cubes.train_split, args.calibration_cubes))
    paths = {"float": path}
    for part, nodes in quantisable_nodes(path).items():
        if not nodes:  # quantize_static would take an empty list for "every node"
            print(f"no convolutions of {part} in this model: variant left out")
            continue
        paths[part] = workdir / f"int8_{part}.onnx"
        tic = time.time()
        quantise(path, paths[part], nodes, calibration)
        print(f"quantised {len(nodes)} convolutions ({part}) in {time.time() - tic:.0f} s")
    return paths, metadata["outputs"], cubes


def runners(paths: dict[str, Path], outputs: list[str], threads: int) -> dict:
    """Every execution: float32 and bf16 of the float graph, each int8 graph with float32 and
    with bf16 for what stays in floating point."""
    out = {name: (paths[graph], bf16) for name, (graph, bf16) in EXECUTIONS.items()}
    for part in [p for p in PARTS if p in paths]:
        out[f"int8 {part} + float32"] = (paths[part], False)
        out[f"int8 {part} + bf16"] = (paths[part], True)
    return {
        name: exported_model(path, "openvino", outputs, threads, micro_batch=32, bf16=bf16)
        for name, (path, bf16) in out.items()
    }


def speed_rows(models: dict, frames, flows, repeats: int, warmup: int, label: str) -> list[dict]:
    calls = {name: (lambda m=m: m(frames, flows)) for name, m in models.items()}
    seconds = interleaved(calls, repeats, warmup)
    return [rate_entry(f"{label}{name}", len(frames), "cubes", s) for name, s in seconds.items()]


def agreement_rows(models: dict, frames, flows) -> dict[str, dict]:
    """Per execution and branch: rank correlation and relative change against float32."""
    scores = {
        name: [s.numpy() for s in object_scores(m(frames, flows))] for name, m in models.items()
    }
    reference = scores["float32"]
    doc = {}
    for name, branches in scores.items():
        doc[name] = {
            branch: {
                "rank_correlation": rank_correlation(mine, ref),
                "median_relative_change": float(np.median(relative_change(mine, ref))),
                "max_relative_change": float(relative_change(mine, ref).max()),
            }
            for branch, mine, ref in zip(("S_r", "S_p", "S_kl"), branches, reference)
            if np.abs(ref).sum() > 0  # a branch the model type lacks
        }
    return doc


def print_agreement(doc: dict) -> None:
    print("\nagreement with float32 (test cubes, no labels)")
    print("| execution | S_r rank corr. | S_r median change | S_p rank corr. | S_p median change |")
    print("|---|---|---|---|---|")
    for name, b in doc.items():
        print(
            f"| {name} | {b['S_r']['rank_correlation']:.5f} | "
            f"{b['S_r']['median_relative_change']:.2e} | {b['S_p']['rank_correlation']:.5f} | "
            f"{b['S_p']['median_relative_change']:.2e} |"
        )


def timing_only(args) -> None:
    """The child process of --cap-isa: time the graphs of --graphs, print rows as JSON."""
    setup(args)
    spec = json.loads(Path(args.graphs).read_text())
    paths = {k: Path(v) for k, v in spec["paths"].items()}
    models = runners(paths, spec["outputs"], args.threads or torch.get_num_threads())
    frames, flows = evenly_spaced_cubes(CubeDataset(Path(spec["cubes"]), max_cubes=args.cubes))
    rows = speed_rows(models, frames, flows, args.repeats, args.warmup, f"{args.cap_isa} ")
    print("ROWS " + json.dumps(rows))


def main() -> None:
    parser = base_parser("bench_int8", __doc__.split("\n")[0])
    parser.add_argument("--run", default="runs/ped2_cpu", help="trained run directory")
    parser.add_argument("--cubes", type=int, default=256, help="test cubes timed and compared")
    parser.add_argument("--calibration-cubes", type=int, default=256, help="training cubes")
    parser.add_argument("--cap-isa", default="", help="also time with ONEDNN_MAX_CPU_ISA=this")
    parser.add_argument("--graphs", default="", help=argparse.SUPPRESS)  # the --cap-isa child
    args = parser.parse_args()
    if args.graphs:
        return timing_only(args)
    device = setup(args)
    threads = args.threads or torch.get_num_threads()
    with tempfile.TemporaryDirectory() as tmp:
        paths, outputs, cubes = graphs(args, Path(tmp))
        test_folder = cubes.folder(cubes.test_split)
        frames, flows = evenly_spaced_cubes(cubes.open(cubes.test_split, args.cubes))
        models = runners(paths, outputs, threads)
        agreement = agreement_rows(models, frames, flows)
        rows = speed_rows(models, frames, flows, args.repeats, args.warmup, "")
        del models
        if args.cap_isa:
            rows += capped_rows(args, paths, outputs, test_folder, Path(tmp))
    print_table(rows, f"OpenVINO, {args.cubes} test cubes, {threads} threads")
    print_agreement(agreement)
    settings = {
        "run": args.run,
        "cubes": args.cubes,
        "calibration_cubes": args.calibration_cubes,
        "cap_isa": args.cap_isa,
        "agreement": agreement,
    }
    save(args, device, rows, settings)


def capped_rows(args, paths: dict, outputs: list[str], cube_folder: Path, tmp: Path) -> list[dict]:
    """The timings again in a child process with oneDNN capped at --cap-isa."""
    spec = tmp / "graphs.json"
    doc = {"paths": {k: str(v) for k, v in paths.items()}, "outputs": outputs}
    doc["cubes"] = str(cube_folder)
    spec.write_text(json.dumps(doc))
    command = [sys.executable, "-m", "bench.bench_int8", "--graphs", str(spec)]
    command += ["--threads", str(args.threads), "--cubes", str(args.cubes)]
    command += ["--repeats", str(args.repeats), "--warmup", str(args.warmup)]
    command += ["--cap-isa", args.cap_isa]
    env = dict(os.environ, ONEDNN_MAX_CPU_ISA=args.cap_isa)
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    if result.returncode:
        raise RuntimeError(f"the --cap-isa {args.cap_isa} run failed:\n{result.stderr[-2000:]}")
    line = next(x for x in result.stdout.splitlines() if x.startswith("ROWS "))
    return json.loads(line[len("ROWS ") :])


if __name__ == "__main__":
    main()
