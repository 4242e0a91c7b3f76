"""Stage 1: train ML-MemAE-SC to reconstruct the last flow y4 of every training cube
(docs/method.md §3, 5).

    python ml_memae_sc_train.py --cfg cfgs/ped2.yaml [--resume] [key=value ...]
    torchrun --nproc_per_node=2 ml_memae_sc_train.py --cfg cfgs/ped2.yaml

Writes <run_dir>/stage1/{last.pth, best.pth, config.yaml, tb/}.
"""

from __future__ import annotations

import argparse

from engine.distributed import cleanup_distributed
from engine.stages import train_stage1
from utils.cli import run_cli
from utils.config import add_config_args, load_config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_config_args(parser)
    parser.add_argument("--resume", action="store_true", help="continue from stage1/last.pth")
    args = parser.parse_args()
    cfg = load_config(args.cfg, args.overrides)
    try:
        train_stage1(cfg, resume=args.resume)
    finally:
        cleanup_distributed()


if __name__ == "__main__":
    run_cli(main)
