"""Stages 2 and 3 of HF2-VAD (docs/method.md §5).

Stage 2 trains the CVAE to predict the target frame from 4 frames and the ML-MemAE-SC's
reconstructions of the 4 flows, with the ML-MemAE-SC (from stage 1) frozen in eval mode; only the
CVAE losses (KL, frame, gradient) are optimised. Stage 3 fine-tunes both networks jointly with
all losses. Types cvae and vae have no ML-MemAE-SC: they train in stage 2 only, from scratch.

    python train.py --cfg cfgs/ped2.yaml --stage 2 [--resume] [key=value ...]
    python train.py --cfg cfgs/ped2.yaml --stage 3
    torchrun --nproc_per_node=2 train.py --cfg cfgs/ped2.yaml --stage 2

Writes <run_dir>/stage{2,3}/{last.pth, best.pth, config.yaml, tb/}.
"""

from __future__ import annotations

import argparse

from engine.distributed import cleanup_distributed
from engine.stages import train_stage
from utils.cli import run_cli
from utils.config import add_config_args, load_config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_config_args(parser)
    parser.add_argument(
        "--stage",
        type=int,
        required=True,
        choices=(2, 3),
        help="2: the CVAE, with stage 1's ML-MemAE-SC frozen; 3: both fine-tuned together",
    )
    parser.add_argument("--resume", action="store_true", help="continue from stageN/last.pth")
    args = parser.parse_args()
    cfg = load_config(args.cfg, args.overrides)
    try:
        train_stage(cfg, args.stage, resume=args.resume)
    finally:
        cleanup_distributed()


if __name__ == "__main__":
    run_cli(main)
