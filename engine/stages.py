"""The three training stages as library functions (docs/method.md §5)."""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from datasets import CubeSource, WithFlowRecon
from engine.checkpoint import load_checkpoint, restore_model
from engine.distributed import setup_distributed
from engine.run_dir import RunLayout
from engine.trainer import (
    FitSettings,
    Stage,
    StageSchedule,
    autocast,
    autocast_dtype,
    finished,
    fit,
    to_device,
)
from models import build_loss, build_memae, build_model, memae_loss, model_type
from utils.io import write_npz
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
    ctx = setup_distributed(cfg.device, cfg.train.cpu_threads)
    seed_everything(cfg.seed)
    memae = build_memae(cfg.model.memae)
    schedule = StageSchedule.from_config(cfg.stage1)
    dataset, val_dataset = CubeSource.from_config(cfg).train_val(schedule.max_cubes)
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
        schedule,
        RunLayout.from_config(cfg).stage_dir(1),
        memae,
        "memae",
        dataset,
        loss_fn,
        image_fn,
        val_dataset,
        val_fn,
    )
    return fit(stage, FitSettings.from_config(cfg), ctx, resume=resume)


def check_stage(type_name: str, stage: int) -> None:
    """The stages of each model type are in models/types.py; stage 1 is ml_memae_sc_train.py."""
    if stage not in (2, 3):
        raise ValueError(f"train.py runs stage 2 or 3, got {stage} (stage 1: ml_memae_sc_train.py)")
    kind = model_type(type_name)
    if stage in kind.stages:
        return
    if kind.stages == (1,):
        raise ValueError(
            f"model.type {kind.name!r} is trained by stage 1 alone (ml_memae_sc_train.py)"
        )
    raise ValueError(
        f"stage 3 fine-tunes ML-MemAE-SC and CVAE jointly; model.type {kind.name!r} has no "
        f"ML-MemAE-SC, so it is trained by stage {kind.stages[-1]} alone"
    )


def _init_weights(model, path: Path, config: dict, stage: int) -> str:
    """Restore `model` from the checkpoint at `path` (made for `config`); a stage-2 model
    without ML-MemAE-SC starts afresh. Returns the note logged when training starts."""
    if stage == 2 and model.memae is None:
        return ""
    ckpt = load_checkpoint(path, config)
    restore_model(model, ckpt, path)
    return f"stage{stage}: initialised from {path} (epoch {ckpt['epoch']})"


def image_grid(batch, out):
    """Last flow and its reconstruction (when any), target and predicted frames."""
    recon = out["flow_recon"][:, -1] if out["flow_recon"] is not None else None
    return tensorboard_grid(batch["flows"][:, -1], recon, out["frame_target"], out["frame_pred"])


@torch.inference_mode()
def frozen_reconstructions(memae, dataset, device, settings: FitSettings, batch_size: int = 256):
    """The frozen ML-MemAE-SC's reconstructions of every flow of `dataset` [N, F, 2, H, W]
    (float32, on the CPU): a fixed function of the cube while stage 2 trains, so computed once;
    in the training precision of `settings`."""
    memae.eval()
    parts = []
    for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False):
        flows = to_device(batch, device)["flows"]
        with autocast(device, settings):
            recon = memae(flows.flatten(0, 1))["recon"]
        parts.append(recon.float().view_as(flows).cpu())
    return torch.cat(parts) if parts else torch.zeros(0)


def reconstruction_key(memae, dataset, device, settings: FitSettings) -> str:
    """What the frozen reconstructions of `dataset` depend on, hashed: the ML-MemAE-SC's weights,
    the cubes (their folder's manifest and the rows used) and the precision they are made in."""
    digest = hashlib.sha256(str(autocast_dtype(device, settings)).encode())
    for name, tensor in sorted(memae.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    digest.update(json.dumps(dataset.manifest, sort_keys=True).encode())
    digest.update(np.ascontiguousarray(dataset.rows).tobytes())
    return digest.hexdigest()


def cached_reconstructions(
    memae, dataset, device, settings: FitSettings, path: Path, write: bool
) -> torch.Tensor:
    """`frozen_reconstructions`, kept in `path` (.npz) so that a resumed stage 2 reads them back
    instead of recomputing them (minutes on a CPU); recomputed when the key differs. Only the
    process that `write`s saves them."""
    key = reconstruction_key(memae, dataset, device, settings)
    try:
        with np.load(path, allow_pickle=False) as saved:
            if str(saved["key"]) == key:
                return torch.from_numpy(saved["recon"])
    except (OSError, ValueError, KeyError, zipfile.BadZipFile):
        pass  # missing or damaged: computed again
    recon = frozen_reconstructions(memae, dataset, device, settings)
    if write:
        write_npz(path, recon=recon.numpy(), key=np.array(key))
    return recon


def prediction_error(module, batch) -> torch.Tensor:
    """Per-cube mean squared error of the predicted target frame (test mode) [B]."""
    out = module(batch["frames"], batch["flows"], batch.get("flow_recon"))
    return (out["frame_pred"].float() - out["frame_target"].float()).pow(2).flatten(1).mean(1)


def joint_error(lambda_recon: float, lambda_frame: float):
    """Stage 3's validation error per cube: the flow reconstruction and frame prediction mean
    squared errors, weighted as in the loss."""

    def error(module, batch) -> torch.Tensor:
        out = module(batch["frames"], batch["flows"])
        recon = (out["flow_recon"].float() - out["flow_target"].float()).pow(2).flatten(1)
        frame = (out["frame_pred"].float() - out["frame_target"].float()).pow(2).flatten(1)
        return lambda_recon * recon.mean(1) + lambda_frame * frame.mean(1)

    return error


def stage2_on_original_flows(choice: str) -> bool:
    """stage2.cvae_flows: whether a hybrid's CVAE learns from the reconstructed flows (the paper)
    or from the original ones, stage 3 then fine-tuning it on the reconstructions (method §5)."""
    if choice not in ("reconstructed", "original"):
        raise ValueError(
            f"config key 'stage2.cvae_flows' must be reconstructed or original, got {choice!r}"
        )
    return choice == "original"


def train_stage(cfg, stage: int, resume: bool = False) -> dict:
    """Train (or resume, or skip when finished) stage 2 or 3 for `cfg`; returns fit()'s summary."""
    check_stage(cfg.model.type, stage)
    if cfg.train.init_from not in ("best", "last"):
        raise ValueError(
            f"config key 'train.init_from' must be best or last, got {cfg.train.init_from!r}"
        )
    ctx = setup_distributed(cfg.device, cfg.train.cpu_threads)
    seed_everything(cfg.seed)
    model = build_model(cfg.model)
    # stage 2 starts from stage 1's ML-MemAE-SC (or train.stage1_from), stage 3 from stage 2
    init_path = RunLayout.from_config(cfg).stage_dir(stage - 1) / f"{cfg.train.init_from}.pth"
    if stage == 2 and cfg.train.stage1_from:
        init_path = Path(cfg.train.stage1_from)
    init_note = _init_weights(model, init_path, cfg.to_dict(), stage)
    loss_cfg = cfg.loss.to_dict()
    if stage == 2:
        model.set_memae_frozen(True)
        # The frozen ML-MemAE-SC gets no gradients; its loss terms are logged, not optimised.
        loss_cfg.update(lambda_recon=0.0, lambda_ent=0.0)
        if stage2_on_original_flows(cfg.stage2.cvae_flows):
            model.num_recon_flows = 0  # this stage only: checkpoints keep the model's own k
    criterion = build_loss(loss_cfg)
    schedule = StageSchedule.from_config(cfg[f"stage{stage}"])
    settings = FitSettings.from_config(cfg)
    dataset, val_dataset = CubeSource.from_config(cfg).train_val(schedule.max_cubes)
    out_dir = RunLayout.from_config(cfg).stage_dir(stage)
    skip = resume and finished(out_dir, schedule.num_epochs)  # fit() says so
    recon_paths = [out_dir / "frozen_recon_train.npz", out_dir / "frozen_recon_val.npz"]
    if stage == 2 and model.memae is not None and model.cvae_sees_reconstructions() and not skip:
        memae = model.memae.to(ctx.device)

        def with_recon(data, path: Path) -> WithFlowRecon:
            recon = cached_reconstructions(memae, data, ctx.device, settings, path, ctx.is_main)
            return WithFlowRecon(data, recon)

        dataset = with_recon(dataset, recon_paths[0])
        if val_dataset is not None:
            val_dataset = with_recon(val_dataset, recon_paths[1])
    val_fn = prediction_error
    if stage == 3:
        val_fn = joint_error(cfg.loss.lambda_recon, cfg.loss.lambda_frame)

    def loss_fn(module, batch):
        out = module(batch["frames"], batch["flows"], batch.get("flow_recon"))
        return criterion(out), out

    run = Stage(
        f"stage{stage}",
        schedule,
        out_dir,
        model,
        "hf2vad",
        dataset,
        loss_fn,
        image_grid,
        val_dataset,
        val_fn,
        init_note,
    )
    summary = fit(run, settings, ctx, resume=resume)
    if ctx.is_main:  # the stage is done: its cached reconstructions are not needed again
        for path in recon_paths:
            path.unlink(missing_ok=True)
    return summary
