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
import functools
import time

from eval import evaluate, results_table
from ml_memae_sc_train import train_stage1
from models import build_model
from pre_process import run_preprocess
from train import train_stage
from utils.checkpoint import load_checkpoint, restore_model
from utils.config import add_config_args, load_config
from utils.engine import barrier, cleanup_distributed, setup_distributed
from utils.misc import get_logger, record_times
from utils.object_errors import eval_checkpoint_path, stages_for, training_statistics


def _train_statistics(cfg, device) -> dict:
    """Training statistics of the checkpoint that eval will use (computed once, then cached)."""
    path = eval_checkpoint_path(cfg)
    ckpt = load_checkpoint(path, cfg, map_location=device)
    model = build_model(cfg.model)
    restore_model(model, ckpt, path)
    return training_statistics(cfg, model.to(device), ckpt, path, device)


def run_pipeline(cfg) -> dict | None:
    """Run every step for `cfg`; returns the metrics on rank 0 (None on other ranks).

    Steps that were cached or already finished are left out of the recorded times."""
    logger = get_logger()
    ctx = setup_distributed(cfg)
    seconds = {}
    tic = time.time()
    if ctx.is_main:
        summary = run_preprocess(cfg, splits=(cfg.data.train_split, cfg.data.test_split))
        if any(any(s["computed"].values()) for s in summary["splits"].values()):
            seconds["preprocess"] = time.time() - tic
    barrier()
    for stage in stages_for(cfg):
        train = train_stage1 if stage == 1 else functools.partial(train_stage, stage=stage)
        summary = train(cfg, resume=True)
        if summary["seconds"] > 0:
            seconds[f"stage{stage}"] = summary["seconds"]
    if not ctx.is_main:
        return None
    stats = _train_statistics(cfg, ctx.device)
    if not stats["cached"]:
        seconds["train_stats"] = stats["seconds"]
    logger.info(
        "training statistics: S_r {mean_r:.4g} +- {std_r:.4g}, S_p {mean_p:.4g} +- {std_p:.4g} "
        "over {num_cubes} cubes".format(**stats)
    )
    tic = time.time()
    metrics = evaluate(cfg)
    seconds["eval"] = time.time() - tic
    record_times(cfg, seconds)
    print(results_table(metrics))
    print("time (s): " + ", ".join(f"{k} {v:.0f}" for k, v in seconds.items()))
    return metrics


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
    main()
