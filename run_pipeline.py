"""The whole HF2-VAD pipeline in one command: pre-processing, training stages, statistics, eval.

    python run_pipeline.py --cfg cfgs/synthetic.yaml [key=value ...]
    torchrun --nproc_per_node=2 run_pipeline.py --cfg cfgs/ped2.yaml

Pre-processing is skipped when the cubes are cached and up to date; a finished stage is skipped;
an interrupted stage is resumed from its last.pth. Prints a results table at the end (also in
<run_dir>/eval/metrics.json). Under torchrun the stages train with DDP and rank 0 pre-processes
and evaluates.
"""

from __future__ import annotations

import argparse

from engine.distributed import cleanup_distributed
from pipeline.run import run_pipeline
from utils.cli import run_cli
from utils.config import add_config_args, load_config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_config_args(parser)
    args = parser.parse_args()
    cfg = load_config(args.cfg, args.overrides)
    try:
        run_pipeline(cfg)
    finally:
        cleanup_distributed()


if __name__ == "__main__":
    run_cli(main)
