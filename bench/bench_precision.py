"""Does a faster precision or backend change the result? A trained run evaluated in each,
against float32.

    python -m bench.bench_precision --run runs/ped2_cpu [--threads 2]

Each variant is the run's config plus overrides (eval.backend, eval.bf16_cpu), evaluated by
`evaluation.protocol.evaluate` (training statistics included, so each precision is normalised
by its own) in a temporary copy of the run directory (links to its checkpoint and appearance
bank: nothing of the run is overwritten). Float32 is OpenVINO's float32, whose object scores
equal PyTorch's float32 to about 1e-6 (inference/export_run.py, tests/test_export.py) and run
faster. Reported per variant: the micro AUROC of the run's main score over the labelled test
videos and its difference to float32, the rank correlation of every object's fused score with
float32's, the median and largest relative change of S_r and S_p, and the scoring time.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.common import base_parser, save, setup
from engine.run_dir import RunLayout
from evaluation.protocol import evaluate
from inference.export_run import rank_correlation, relative_change
from inference.trained_run import run_config_path
from utils.config import load_config, replaced
from utils.io import read_json

FLOAT32 = "openvino float32"
PRECISION_OVERRIDES = {
    FLOAT32: ["eval.backend=openvino", "eval.bf16_cpu=false"],
    "torch bf16 autocast": ["eval.backend=torch", "eval.bf16_cpu=true"],
    "openvino bf16": ["eval.backend=openvino", "eval.bf16_cpu=true"],
}


def linked_run(run_dir: Path, ckpt: Path, tmp: Path) -> Path:
    """A run directory in `tmp` whose checkpoint (`ckpt`, the run's evaluated one) and
    appearance bank link to the run's, with copies of the statistics cached beside the
    checkpoint (each names what it belongs to)."""
    copy = tmp / "run"
    target = copy / ckpt.relative_to(run_dir)
    target.parent.mkdir(parents=True)
    target.symlink_to(ckpt.resolve())
    for cached in ckpt.parent.glob(f"{ckpt.stem}.train_*"):
        shutil.copy(cached, target.parent / cached.name)
    shutil.copy(run_config_path(run_dir), copy / "config.yaml")
    bank = run_dir / "appearance_bank.npz"
    if bank.is_file():
        (copy / "appearance_bank.npz").symlink_to(bank.resolve())
    return copy


def object_arrays(scores_path: Path) -> dict[str, np.ndarray]:
    videos = read_json(scores_path)["videos"]
    return {
        key: np.concatenate([np.asarray(v["objects"][key], np.float64) for v in videos])
        for key in ("s_r", "s_p", "score")
    }


def main() -> None:
    parser = base_parser("bench_precision", __doc__.split("\n")[0])
    parser.add_argument("--run", required=True, help="a trained run directory (evaluated once)")
    args = parser.parse_args()
    device = setup(args)
    run_dir = Path(args.run)
    base = load_config(run_config_path(run_dir), ["device=cpu", "eval.plots=false"])
    base = replaced(base, {"run_dir": str(run_dir)})  # the folder may have moved since training
    if base.data.test_split is None:
        print(f"bench_precision: {run_dir} has no test split; nothing to compare")
        sys.exit(0)
    results, objects = {}, {}
    with tempfile.TemporaryDirectory(prefix="bench_precision_") as tmp:
        ckpt = RunLayout.from_config(base).eval_checkpoint_path()
        copy = linked_run(run_dir, ckpt, Path(tmp))
        for name, overrides in PRECISION_OVERRIDES.items():
            cfg = load_config(copy / "config.yaml", ["device=cpu", "eval.plots=false", *overrides])
            cfg = replaced(cfg, {"run_dir": str(copy)})
            out = Path(tmp) / name.replace(" ", "_")
            tic = time.time()
            metrics = evaluate(cfg, out)
            main_score = metrics["scores"][metrics["main_score"]]
            results[name] = {
                "micro_auroc": main_score["micro_auroc"],
                "seconds_with_training_statistics": time.time() - tic,
                "seconds_scoring": metrics["seconds_scoring"],
            }
            objects[name] = object_arrays(out / "scores.json")
    rows = []
    reference = objects[FLOAT32]
    for name, result in results.items():
        row = {"name": name, **result}
        row["auroc_minus_float32"] = result["micro_auroc"] - results[FLOAT32]["micro_auroc"]
        row["fused_rank_correlation"] = rank_correlation(objects[name]["score"], reference["score"])
        for key in ("s_r", "s_p"):
            if np.abs(reference[key]).sum() == 0:
                continue
            change = relative_change(objects[name][key], reference[key])
            row[f"{key}_median_relative_change"] = float(np.median(change))
            row[f"{key}_max_relative_change"] = float(change.max())
        rows.append(row)
        print(
            f"{name}: micro AUROC {row['micro_auroc']:.2f} ({row['auroc_minus_float32']:+.2f} "
            f"against float32), fused rank correlation {row['fused_rank_correlation']:.5f}, "
            f"scoring {row['seconds_scoring']:.0f} s"
        )
    save(args, device, rows, {"run": str(run_dir), "labelled_videos_only": True})


if __name__ == "__main__":
    main()
