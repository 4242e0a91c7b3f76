"""Evaluation with the paper's protocol (docs/method.md §6): object scores -> frame scores -> AUROC.

    python eval.py --cfg cfgs/ped2.yaml [key=value ...]
    python eval.py --cfg cfgs/ped2.yaml --rescore eval.w_p=0.5   # re-fuse a saved scores.json

The model evaluated is the final one of the run: stage 3 (hybrid), stage 2 (cvae, vae, or hybrid
with stage3.num_epochs=0) or stage 1 (memae); `eval.checkpoint` picks its best.pth (lowest
training loss, the default; no test labels are used), its last.pth, or any checkpoint path.
Training statistics of S_r and S_p are computed over all training cubes the first time and
cached beside the checkpoint (<ckpt>.train_stats.json; `.sampled_seedK` added for sampled latents).

Writes <run_dir>/eval/: scores.json, metrics.json, config.yaml, roc.png, curves/<video>.png,
objects_highest.png, objects_lowest.png. `--rescore` reads scores.json (checking it was made with
the same model and data settings) and recomputes fusion, smoothing and AUROC with the current
eval settings, without the model. The appearance novelty S_a needs no model either: saved with
another crop feature, k, bank or precision than asked (eval.appearance_*), it is recomputed from
the cubes, with its training statistics.
"""

from __future__ import annotations

import argparse

from evaluation.protocol import run_evaluation
from utils.cli import run_cli
from utils.config import add_config_args, load_config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_config_args(parser)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--rescore", action="store_true", help="recompute from eval/scores.json")
    mode.add_argument(
        "--all-epochs", action="store_true", help="AUROC of every epoch_NNN.pth (keep_epochs)"
    )
    args = parser.parse_args()
    cfg = load_config(args.cfg, args.overrides)
    print(run_evaluation(cfg, rescore_only=args.rescore, all_epochs=args.all_epochs))


if __name__ == "__main__":
    run_cli(main)
