"""Stage 1: train ML-MemAE-SC to reconstruct the last flow y4 of every training cube
(docs/method.md §3, 5).

    python ml_memae_sc_train.py --cfg cfgs/ped2.yaml [--resume] [key=value ...]
    torchrun --nproc_per_node=2 ml_memae_sc_train.py --cfg cfgs/ped2.yaml

Writes <run_dir>/stage1/{last.pth, best.pth, config.yaml, tb/}.
"""

from __future__ import annotations

import argparse

from datasets import train_val_cubes
from models import build_memae, memae_loss, model_type
from utils.checkpoint import stage_dir
from utils.cli import run_cli
from utils.config import add_config_args, load_config
from utils.engine import Stage, cleanup_distributed, fit, setup_distributed
from utils.misc import seed_everything
from utils.plots import tensorboard_grid


def train_stage1(cfg, resume: bool = False) -> dict:
    """Train (or resume, or skip when finished) stage 1 for `cfg`; returns fit()'s summary."""
    if 1 not in model_type(cfg.model.type).stages:
        raise ValueError(
            f"model.type {cfg.model.type!r} has no ML-MemAE-SC: stage 1 is for hybrid and memae"
        )
    if cfg.train.stage1_from:
        raise ValueError(
            f"train.stage1_from is {cfg.train.stage1_from!r}: this run uses that stage 1 and "
            "trains none (set train.stage1_from=null to train one)"
        )
    ctx = setup_distributed(cfg)
    seed_everything(cfg.seed)
    memae = build_memae(cfg.model.memae)
    dataset, val_dataset = train_val_cubes(cfg, cfg.stage1.max_cubes)
    lambda_recon, lambda_ent = cfg.loss.lambda_recon, cfg.loss.lambda_ent

    def loss_fn(module, batch):
        last_flow = batch["flows"][:, -1]  # y4: the motion into the target frame
        out = module(last_flow)
        losses = memae_loss(out["recon"], last_flow, out["att_weights"], lambda_recon, lambda_ent)
        return losses, out

    def val_fn(module, batch):  # per-cube mean squared error of the last flow's reconstruction
        last_flow = batch["flows"][:, -1]
        return (module(last_flow)["recon"].float() - last_flow.float()).pow(2).flatten(1).mean(1)

    def image_fn(batch, out):
        return tensorboard_grid(batch["flows"][:, -1], out["recon"])

    stage = Stage(
        "stage1",
        cfg.stage1,
        stage_dir(cfg, 1),
        memae,
        "memae",
        dataset,
        loss_fn,
        image_fn,
        val_dataset,
        val_fn,
    )
    return fit(stage, cfg, ctx, resume=resume)


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
