"""The training loop shared by the three stages: optimiser, schedule, epochs, checkpoints, logging.

Distributed training: launched with `torchrun --nproc_per_node=K script.py ...`, each process
reads RANK / WORLD_SIZE / LOCAL_RANK, joins a process group (nccl on CUDA, gloo on CPU), trains a
DistributedDataParallel copy on its shard of every epoch (DistributedSampler) and rank 0 alone
logs and writes files. `batch_size` in a stage section is the global batch: each of the K
processes takes batch_size / K cubes per step, so one step sees the same data as without torchrun.

Reproducibility and resuming: the data order of epoch e comes from (seed, e) (DistributedSampler),
and python/numpy/torch are re-seeded from (seed, e, rank) at the start of every epoch (dropout,
the CVAE's posterior noise). A run resumed from the checkpoint after epoch e therefore continues
exactly as the uninterrupted run would (on CPU; CUDA kernels may differ in the last bits).
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from engine.checkpoint import load_checkpoint, save_checkpoint
from engine.distributed import DistContext, barrier
from utils.config import save_config
from utils.fingerprint import CheckpointError
from utils.io import folder_lock
from utils.misc import (
    dtype_name,
    get_logger,
    progress_bar,
    progress_bars_wanted,
    seed_everything,
    seed_worker,
    use_cpu_bf16,
)

# loss_fn(train_module, batch) -> (named loss terms including "total", model outputs)
LossFn = Callable[[nn.Module, dict], tuple[dict[str, torch.Tensor], dict]]
# image_fn(batch, outputs) -> image [3, H, W] for TensorBoard
ImageFn = Callable[[dict, dict], torch.Tensor]
# val_fn(module in eval mode, batch) -> per-cube validation error [B] (lower is better)
ValFn = Callable[[nn.Module, dict], torch.Tensor]


def build_optimizer(params, schedule) -> torch.optim.Adam:
    """Adam (betas 0.9 / 0.999) with the stage's lr and eps (docs/method.md §5). The fused kernel
    updates every parameter in one pass (9x faster than the per-tensor loop on CPU for the 57M
    memory slots; same update up to float rounding)."""
    return torch.optim.Adam(
        params, lr=schedule.lr, eps=schedule.eps, betas=(0.9, 0.999), fused=True
    )


def build_scheduler(optimizer, schedule) -> torch.optim.lr_scheduler.StepLR:
    """StepLR: lr x gamma every step_size epochs (stepped once per epoch)."""
    return torch.optim.lr_scheduler.StepLR(
        optimizer, step_size=schedule.step_size, gamma=schedule.gamma
    )


def autocast_dtype(device: torch.device, settings) -> torch.dtype | None:
    """float16 on CUDA when `settings.amp`, bfloat16 on CPU when `settings.bf16_cpu` and the CPU
    has fast bfloat16 kernels, else None: float32 (FitSettings: train.amp, train.bf16_cpu)."""
    if device.type == "cuda" and settings.amp:
        return torch.float16
    if device.type == "cpu" and use_cpu_bf16(settings.bf16_cpu, "train.bf16_cpu"):
        return torch.bfloat16
    return None


def autocast(device: torch.device, settings):
    """The training autocast context of `autocast_dtype` (a no-op for float32)."""
    dtype = autocast_dtype(device, settings)
    return torch.autocast(device.type, dtype=dtype) if dtype else contextlib.nullcontext()


def build_train_loader(dataset: Dataset, schedule, seed: int, ctx: DistContext) -> DataLoader:
    """Shuffled loader over this process's shard; order depends on (seed, epoch) only."""
    if schedule.batch_size % ctx.world_size:
        raise ValueError(
            f"stage batch_size {schedule.batch_size} must be divisible by the number of "
            f"processes ({ctx.world_size})"
        )
    sampler = DistributedSampler(
        dataset, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=True, seed=seed
    )
    return DataLoader(
        dataset,
        batch_size=schedule.batch_size // ctx.world_size,
        sampler=sampler,
        num_workers=schedule.num_workers,
        worker_init_fn=seed_worker,
        generator=torch.Generator(),
        pin_memory=ctx.device.type == "cuda",
        persistent_workers=False,
    )


def to_device(batch: dict, device: torch.device) -> dict:
    return {
        k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()
    }


def epoch_seed(seed: int, epoch: int, rank: int) -> int:
    """The seed of one epoch on one process (distinct noise per rank, fixed per epoch)."""
    return seed + 1_000_003 * (epoch + 1) + 7919 * rank


@dataclass(frozen=True)
class StageSchedule:
    """One stage's section of the config (stage1, stage2, stage3), read once: epochs, batch,
    Adam and StepLR settings, data loader workers, checkpoints, early stopping and the cube
    subsample (`max_cubes`, 0 = all)."""

    num_epochs: int
    batch_size: int
    lr: float
    eps: float
    step_size: int
    gamma: float
    num_workers: int
    ckpt_every: int
    max_cubes: int
    patience: int

    @classmethod
    def from_config(cls, section) -> StageSchedule:
        """From a stage section (its values already type-checked by load_config)."""
        return cls(**{f.name: section[f.name] for f in fields(cls)})


@dataclass(frozen=True)
class FitSettings:
    """What the training loop reads from the config besides the stage's own section, read once
    (`from_config`): the run directory, the seed, the precision (amp on CUDA, bf16_cpu on the
    CPU), how often to log scalars and images, whether every epoch's checkpoint is kept, and the
    resolved config (saved beside the checkpoints; their fingerprints and resume checks)."""

    run_dir: Path
    seed: int
    amp: bool
    bf16_cpu: bool
    log_every: int
    image_every: int
    keep_epochs: bool
    config: dict

    @classmethod
    def from_config(cls, cfg) -> FitSettings:
        train = cfg.train
        return cls(
            Path(cfg.run_dir),
            int(cfg.seed),
            bool(train.amp),
            bool(train.bf16_cpu),
            int(train.log_every),
            int(train.image_every),
            bool(train.keep_epochs),
            cfg.to_dict(),
        )


@dataclass
class Stage:
    """One training stage: what is trained, on what, and where its files go.

    module: the network whose weights are optimised and saved (the ML-MemAE-SC alone in stage 1,
    the HF2VAD wrapper afterwards); only its parameters with requires_grad are optimised.
    kind: "memae" or "hf2vad", recorded in the checkpoint.
    val_dataset, val_fn: held-out normal cubes (whole training videos) and their per-cube error;
    when given, best.pth is the epoch with the lowest mean validation error and the stage stops
    after `schedule.patience` epochs without improvement (0 = never early).
    """

    name: str
    schedule: StageSchedule
    out_dir: Path
    module: nn.Module
    kind: str
    dataset: Dataset
    loss_fn: LossFn
    image_fn: ImageFn
    val_dataset: Dataset | None = None
    val_fn: ValFn | None = None
    init_note: str = ""  # where the weights come from, logged when training starts afresh


def _all_reduce_sums(sums: dict[str, torch.Tensor], count: int, device) -> dict[str, float]:
    names = sorted(sums)
    packed = torch.stack(
        [sums[n].to(device, torch.float64) for n in names]
        + [torch.tensor(float(count), device=device, dtype=torch.float64)]
    )
    if dist.is_initialized():
        dist.all_reduce(packed)
    total = packed[-1].item()
    return {n: packed[i].item() / max(total, 1.0) for i, n in enumerate(names)}


def train_one_epoch(
    stage: Stage,
    train_module: nn.Module,
    loader: DataLoader,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    ctx: DistContext,
    fit_settings: FitSettings,
    epoch: int,
    step: int,
    writer,
) -> tuple[dict[str, float], int]:
    """One pass over this process's shard. Returns (mean of each loss term over all cubes, step)."""
    train_module.train()
    sums: dict[str, torch.Tensor] = {}
    count = 0
    num_epochs = stage.schedule.num_epochs
    bar = progress_bar(
        loader,
        desc=f"{stage.name} {epoch + 1}/{num_epochs}",
        disable=not ctx.is_main,
        leave=False,
        dynamic_ncols=True,
    )
    # without progress bars (a log file), four lines per epoch say how it goes
    report_every = 0 if progress_bars_wanted() else max(1, len(loader) // 4)
    for i, batch in enumerate(bar, start=1):
        batch = to_device(batch, ctx.device)
        with autocast(ctx.device, fit_settings):
            losses, out = stage.loss_fn(train_module, batch)
        total = losses["total"]
        if not torch.isfinite(total):
            raise FloatingPointError(
                f"{stage.name}: loss is {total.item()} at epoch {epoch + 1}, step {step + 1}"
            )
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(total).backward()
        scaler.step(optimizer)
        scaler.update()
        step += 1
        size = batch["flows"].shape[0]
        count += size
        for name, value in losses.items():
            sums[name] = sums.get(name, 0.0) + value.detach().double().cpu() * size
        # every loss term at a fixed step interval, and at least at the end of every epoch
        last = i == len(loader)
        if writer is not None and (step % fit_settings.log_every == 0 or last):
            for name, value in losses.items():
                writer.add_scalar(f"loss/{name}", value.item(), step)
            writer.add_scalar("lr", optimizer.param_groups[0]["lr"], step)
        # images at a fixed interval, and at least once per epoch (short stages, e.g. stage 3)
        if writer is not None and (step % fit_settings.image_every == 0 or last):
            writer.add_image("objects", stage.image_fn(batch, out), step)
        if ctx.is_main:
            bar.set_postfix(loss=f"{total.item():.4g}")
            if report_every and i % report_every == 0 and i < len(loader):
                get_logger().info(
                    f"{stage.name} {epoch + 1}/{num_epochs}: step {i}/{len(loader)}, "
                    f"loss {total.item():.4g}"
                )
    return _all_reduce_sums(sums, count, ctx.device), step


@torch.inference_mode()
def validate(stage: Stage, ctx: DistContext, fit_settings: FitSettings, batch_size: int) -> float:
    """Mean validation error of the stage's module in eval mode (every process computes the same
    number on the whole validation set, so early-stopping decisions agree across processes)."""
    module = stage.module
    was_training = module.training
    module.eval()
    loader = DataLoader(stage.val_dataset, batch_size=batch_size, shuffle=False)
    total, count = 0.0, 0
    for batch in loader:
        batch = to_device(batch, ctx.device)
        with autocast(ctx.device, fit_settings):
            errors = stage.val_fn(module, batch)
        total += float(errors.double().sum())
        count += errors.shape[0]
    module.train(was_training)
    return total / max(count, 1)


# Stage settings that may change when a stage is resumed: how long and how often to save.
RESUMABLE_KEYS = ("num_epochs", "ckpt_every", "num_workers", "patience")


def resume_changes(made_with: dict, config: dict, stage_name: str) -> list[str]:
    """The training settings of `stage_name` (its section except RESUMABLE_KEYS, the losses,
    the seed and the validation split) that differ between a checkpoint's config and `config`
    (both resolved configs as plain dicts)."""

    def settings(config) -> dict:
        config = config.to_dict() if hasattr(config, "to_dict") else config
        stage = {k: v for k, v in config[stage_name].items() if k not in RESUMABLE_KEYS}
        train = config["train"]
        return {
            stage_name: stage,
            "loss": config["loss"],
            "seed": config["seed"],
            "train.val_videos": train.get("val_videos", []),
            "train.val_max_cubes": train.get("val_max_cubes", 0),
        }

    old, new = settings(made_with), settings(config)
    changed = []
    for section in new:
        a, b = old[section], new[section]
        if isinstance(b, dict):
            changed += [
                f"{section}.{k}: {a.get(k)!r} there, {b.get(k)!r} now"
                for k in sorted(set(a) | set(b))
                if a.get(k) != b.get(k)
            ]
        elif a != b:
            changed.append(f"{section}: {a!r} there, {b!r} now")
    return changed


@dataclass
class Progress:
    """Where a stage stands: epochs done, optimiser steps, the best selection value (validation
    error, else mean training loss) and its epoch, and whether early stopping ended the stage."""

    epoch: int = 0
    step: int = 0
    best: float = math.inf
    best_epoch: int = 0
    stopped_early: bool = False


def _resume_state(
    stage: Stage, fit_settings: FitSettings, ctx: DistContext, optimizer, scheduler, scaler, resume
) -> Progress:
    """The progress recorded in `last.pth` (after loading it) when resuming; a fresh start else."""
    last = stage.out_dir / "last.pth"
    if not last.exists():
        return Progress()
    if not resume:
        raise CheckpointError(
            f"{last} already exists: pass --resume to continue that run, or choose another "
            f"run_dir (or delete {stage.out_dir}) to start over"
        )
    ckpt = load_checkpoint(last, fit_settings.config, map_location=ctx.device)
    if ckpt["module"] != stage.kind:
        raise CheckpointError(f"{last} holds a {ckpt['module']} model, expected {stage.kind}")
    changed = resume_changes(ckpt["config"], fit_settings.config, stage.name)
    if changed:
        raise CheckpointError(
            f"cannot resume {last} with other training settings than it was made with: "
            + "; ".join(changed)
            + ". Use the settings it was made with (see its config.yaml), or another run_dir"
        )
    stage.module.load_state_dict(ckpt["model"])
    optimizer.load_state_dict(ckpt["optimizer"])
    scheduler.load_state_dict(ckpt["scheduler"])
    if ckpt["scaler"]:  # empty when the run was made without AMP (e.g. on CPU)
        scaler.load_state_dict(ckpt["scaler"])
    return Progress(
        ckpt["epoch"],
        ckpt["step"],
        ckpt["best_loss"],
        ckpt.get("best_epoch", ckpt["epoch"]),
        ckpt.get("stopped_early", False),
    )


def finished(out_dir: Path, num_epochs: int) -> bool:
    """Whether the stage in `out_dir` has already trained `num_epochs` epochs or stopped early
    (its last.pth says so): then preparing its data can be skipped."""
    last = out_dir / "last.pth"
    if not last.is_file():
        return False
    ckpt = load_checkpoint(last)
    return ckpt["epoch"] >= num_epochs or bool(ckpt.get("stopped_early", False))


def fit(stage: Stage, settings: FitSettings, ctx: DistContext, resume: bool = False) -> dict:
    """Train `stage` to `stage.schedule.num_epochs` epochs (or until early stopping), resuming from
    last.pth when asked.

    Writes (rank 0) out_dir/{last.pth, best.pth, config.yaml, tb/}; best = lowest mean validation
    error when the stage has a validation set, else lowest mean training loss of an epoch (no
    test labels are used either way). Returns a summary dict. Rank 0 holds the run directory's
    lock meanwhile, so a second run into the same directory is refused.
    """
    lock = folder_lock(settings.run_dir) if ctx.is_main else contextlib.nullcontext()
    with lock:
        return _fit(stage, settings, ctx, resume)


def _fit(stage: Stage, settings: FitSettings, ctx: DistContext, resume: bool) -> dict:
    logger = get_logger()
    schedule = stage.schedule
    module = stage.module.to(ctx.device)
    params = [p for p in module.parameters() if p.requires_grad]
    optimizer = build_optimizer(params, schedule)
    scheduler = build_scheduler(optimizer, schedule)
    scaler = torch.amp.GradScaler("cuda", enabled=ctx.device.type == "cuda" and settings.amp)
    progress = _resume_state(stage, settings, ctx, optimizer, scheduler, scaler, resume)
    if progress.epoch >= schedule.num_epochs or progress.stopped_early:
        why = "stopped early" if progress.stopped_early else "already trained"
        logger.info(f"{stage.name}: {why} after {_epochs(progress.epoch)}, nothing to do")
        return {"epochs": progress.epoch, "best_loss": progress.best, "seconds": 0.0}
    if progress.epoch:
        logger.info(f"{stage.name}: resuming after epoch {progress.epoch} (step {progress.step})")
    elif stage.init_note:
        logger.info(stage.init_note)
    train_module = module
    if ctx.distributed:
        device_ids = [ctx.device.index] if ctx.device.type == "cuda" else None
        train_module = DistributedDataParallel(module, device_ids=device_ids)
    loader = build_train_loader(stage.dataset, schedule, settings.seed, ctx)
    writer = None
    if ctx.is_main:
        from torch.utils.tensorboard import SummaryWriter  # slow import, rank 0 only

        stage.out_dir.mkdir(parents=True, exist_ok=True)
        save_config(settings.config, stage.out_dir / "config.yaml")
        writer = SummaryWriter(str(stage.out_dir / "tb"), purge_step=progress.step + 1)
    val_text = f", {len(stage.val_dataset)} validation cubes" if stage.val_dataset else ""
    logger.info(
        f"{stage.name}: {len(stage.dataset)} cubes{val_text}, "
        f"{sum(p.numel() for p in params):,} trained parameters, up to "
        f"{_epochs(schedule.num_epochs)}, {ctx.device}, {ctx.world_size} process(es)"
    )
    precision = dtype_name(autocast_dtype(ctx.device, settings))
    started = time.time()
    for epoch in range(progress.epoch, schedule.num_epochs):
        tic = time.time()
        loader.sampler.set_epoch(epoch)
        loader.generator.manual_seed(epoch_seed(settings.seed, epoch, ctx.rank))
        seed_everything(epoch_seed(settings.seed, epoch, ctx.rank))
        lr = optimizer.param_groups[0]["lr"]
        means, progress.step = train_one_epoch(
            stage,
            train_module,
            loader,
            optimizer,
            scaler,
            ctx,
            settings,
            epoch,
            progress.step,
            writer,
        )
        scheduler.step()
        val = None
        if stage.val_dataset is not None:
            val = validate(stage, ctx, settings, schedule.batch_size)
        _update_progress(progress, epoch + 1, val if val is not None else means["total"])
        if schedule.patience and progress.epoch - progress.best_epoch >= schedule.patience:
            progress.stopped_early = progress.epoch < schedule.num_epochs
        if ctx.is_main:
            _save_epoch(
                stage, settings, progress, means, val, optimizer, scheduler, scaler, precision
            )
            for name, value in means.items():
                writer.add_scalar(f"epoch/{name}", value, epoch + 1)
            if val is not None:
                writer.add_scalar("epoch/validation", val, epoch + 1)
            writer.add_scalar("epoch/lr", lr, epoch + 1)
            writer.flush()
        terms = " ".join(f"{k} {v:.4g}" for k, v in means.items() if k != "total")
        val_text = f" validation {val:.5g}" if val is not None else ""
        logger.info(
            f"{stage.name} epoch {epoch + 1}/{schedule.num_epochs}: loss {means['total']:.5g} "
            f"({terms}){val_text} lr {lr:.3g} {time.time() - tic:.1f}s"
        )
        barrier()
        if progress.stopped_early:
            logger.info(
                f"{stage.name}: no validation improvement for {_epochs(schedule.patience)}, "
                f"stopping; best epoch {progress.best_epoch}"
            )
            break
    if writer is not None:
        writer.close()
    return {
        "epochs": progress.epoch,
        "best_loss": progress.best,
        "best_epoch": progress.best_epoch,
        "seconds": time.time() - started,
    }


def _epochs(count: int) -> str:
    return f"{count} epoch" if count == 1 else f"{count} epochs"


def _update_progress(progress: Progress, done: int, value: float) -> None:
    progress.epoch = done
    if value < progress.best:
        progress.best, progress.best_epoch = value, done


def _save_epoch(
    stage, settings, progress, means, val, optimizer, scheduler, scaler, precision: str
) -> None:
    """Write best.pth when this epoch is the best so far, and last.pth every ckpt_every epochs,
    at the last epoch and when stopping early (`precision`: what the epoch's autocast computed
    in, as run)."""
    done = progress.epoch
    state = {
        "model": stage.module.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict(),
        "precision": precision,
        "epoch": done,
        "step": progress.step,
        "epoch_loss": means["total"],
        "loss_terms": means,
        "val_loss": val,
        "selected_by": "validation" if val is not None else "training_loss",
        "best_loss": progress.best,
        "best_epoch": progress.best_epoch,
        "stopped_early": progress.stopped_early,
        "saved_at": datetime.now(UTC).isoformat(),
    }
    if progress.best_epoch == done:
        save_checkpoint(stage.out_dir / "best.pth", state, settings.config, stage.kind)
    final = done == stage.schedule.num_epochs or progress.stopped_early
    if done % stage.schedule.ckpt_every == 0 or final:
        save_checkpoint(stage.out_dir / "last.pth", state, settings.config, stage.kind)
        if settings.keep_epochs:
            path = stage.out_dir / f"epoch_{done:03d}.pth"
            save_checkpoint(path, state, settings.config, stage.kind)
