"""Figure 4 of the paper: six ML-MemAE-SC variants trained on one MNIST digit.

Each variant reconstructs images of the normal digit; the per-image reconstruction error scores
anomalies (every other digit). Writes a table (AUROC per variant) and a figure of reconstructions.

    python mnist_toy.py --cfg cfgs/mnist.yaml
"""

from __future__ import annotations

import argparse

from tools.mnist_toy import run
from utils.cli import run_cli
from utils.config import add_config_args, load_config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_config_args(parser)
    args = parser.parse_args()
    run(load_config(args.cfg, args.overrides))


if __name__ == "__main__":
    run_cli(main)
