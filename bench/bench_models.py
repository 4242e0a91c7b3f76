"""Model speed at the paper's architecture on random tensors (or, with --checkpoint, trained
weights on real cubes): inference cubes/s and training samples/s of the three stages.

    python -m bench.bench_models [--device cuda] [--threads 1] [--batch 128] [--compile]
    python -m bench.bench_models --quick --threads 1          # under 2 minutes

Inference (test mode, batch --batch, through models.scoring_model as eval.py scores): the model
as built ("eager"), fused (weight norm and batch norm folded into the convs), fused and run in
chunks of --micro-batch cubes, and that in channels_last; each in float32 and in low precision
(bf16 autocast on CPU, float16 AMP on CUDA). With --compile also the fused model under
torch.compile (inductor, frozen weights) in micro-batches, with its compile time.
Training (one optimiser step as engine/trainer.py takes it, with its Adam): stage 1 = ML-MemAE-SC
on single flows (flows/s), stage 2 = CVAE with ML-MemAE-SC frozen (cubes/s), stage 3 = everything
(cubes/s); float32, plus low precision with --train-low-precision.
With --checkpoint (a hybrid run's stage3/best.pth) inference runs on the first --batch cubes of
--cubes, and one more row reads every memory slot (the memory's sparse read is off): with random
weights every slot is in use, so only trained weights show what the sparse read saves.
First the machine's ceiling: GFLOP/s of a 2048^3 matrix product in float32 and low precision.
The numbers are medians of --repeats timed calls after --warmup untimed ones.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from types import SimpleNamespace

import torch

from bench.common import base_parser, print_table, rate_entry, save, setup, time_call
from datasets import CubeDataset
from engine.checkpoint import load_checkpoint, restore_model
from engine.trainer import autocast, build_optimizer
from models import (
    HF2VAD,
    ScoringModel,
    build_loss,
    build_model,
    fuse_for_inference,
    memae_loss,
    scoring_model,
)
from models.memory import Memory
from utils.config import load_config
from utils.misc import cpu_has_fast_bf16


def random_cubes(batch: int, device, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """frames [B, 5, 3, 32, 32] in [0, 1] and flows [B, 4, 2, 32, 32] (a few pixels)."""
    gen = torch.Generator().manual_seed(seed)
    frames = torch.rand(batch, 5, 3, 32, 32, generator=gen)
    flows = 2.0 * torch.randn(batch, 4, 2, 32, 32, generator=gen)
    return frames.to(device), flows.to(device)


def low_precision(device: torch.device) -> tuple[str, object, torch.dtype]:
    """(label, train config for engine.trainer.autocast, dtype) of the device's low precision."""
    if device.type == "cuda":
        return "fp16 AMP", SimpleNamespace(amp=True, bf16_cpu=False), torch.float16
    return "bf16 autocast", SimpleNamespace(amp=False, bf16_cpu=True), torch.bfloat16


FP32 = SimpleNamespace(amp=False, bf16_cpu=False)


def inference_variants(model, micro: int) -> dict:
    """name -> keyword arguments of models.scoring_model (autocast added per precision)."""
    return {
        "eager": dict(fuse=False),
        "fused": dict(fuse=True),
        f"fused micro-batch {micro}": dict(fuse=True, micro_batch=micro),
        f"fused channels_last micro-batch {micro}": dict(
            fuse=True, channels_last=True, micro_batch=micro
        ),
    }


def set_sparse_read(model, enabled: bool) -> None:
    for module in model.modules():
        if isinstance(module, Memory):
            module.sparse_read = enabled


def first_cubes(cube_dir: Path, count: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """frames and flows of the first `count` cubes of `cube_dir`, on the device."""
    dataset = CubeDataset(cube_dir)
    batch = [dataset[i] for i in range(min(count, len(dataset)))]
    frames = torch.stack([b["frames"] for b in batch]).to(device)
    flows = torch.stack([b["flows"] for b in batch]).to(device)
    return frames, flows


def matmul_rows(args, device, size: int = 2048) -> list[dict]:
    """The machine's ceiling: GFLOP/s of a size^3 matrix product in float32 and low precision
    (what a cube's GFLOP are measured against)."""
    gen = torch.Generator().manual_seed(0)
    a, b = (torch.randn(size, size, generator=gen).to(device) for _ in range(2))
    gflop = 2 * size**3 / 1e9
    rows = []
    for dtype in (torch.float32, low_precision(device)[2]):
        x, y = a.to(dtype), b.to(dtype)
        seconds = time_call(lambda x=x, y=y: x @ y, device, args.repeats, args.warmup)
        name = f"matmul {size}^3 {str(dtype).removeprefix('torch.')}"
        rows.append(rate_entry(name, gflop, "GFLOP", seconds))
    return rows


def inference_rows(model: HF2VAD, frames, flows, args, device) -> list[dict]:
    """Scoring the cubes (frames, flows) with the model in test mode, each variant and
    precision (a dense-memory-read row too with --checkpoint's trained weights)."""
    low_label, _, low_dtype = low_precision(device)
    rows = []
    variants = inference_variants(model, args.micro_batch)
    if args.checkpoint:  # random weights use every slot: the sparse read only shows when trained
        best = f"fused channels_last micro-batch {args.micro_batch}"
        variants[f"{best} dense memory read"] = dict(variants[best], sparse_read=False)
    for precision, dtype in (("fp32", None), (low_label, low_dtype)):
        for name, kwargs in variants.items():
            kwargs = dict(kwargs)
            set_sparse_read(model, kwargs.pop("sparse_read", True))
            scorer = scoring_model(model, autocast_dtype=dtype, **kwargs)
            seconds = time_call(
                lambda scorer=scorer: scorer(frames, flows), device, args.repeats, args.warmup
            )
            rows.append(
                rate_entry(
                    f"infer {name} {precision}", args.batch, "cubes", seconds, batch=args.batch
                )
            )
        if args.compile:
            rows.append(compiled_row(model, frames, flows, device, dtype, precision, args))
    return rows


def compiled_row(model, frames, flows, device, dtype, precision: str, args) -> dict:
    """torch.compile (inductor, frozen weights) of the fused model, run in micro-batches; the
    first call's time (compilation) is reported as compile_seconds."""
    import torch._inductor.config as inductor_config

    inductor_config.freezing = True  # constant-fold weights, prepack them for oneDNN
    compiled = torch.compile(fuse_for_inference(model))
    scorer = ScoringModel(compiled, dtype, args.micro_batch)
    tic = time.perf_counter()
    scorer(frames, flows)
    compile_seconds = time.perf_counter() - tic
    seconds = time_call(lambda: scorer(frames, flows), device, args.repeats, 0)
    return rate_entry(
        f"infer fused compiled micro-batch {args.micro_batch} {precision}",
        len(frames),
        "cubes",
        seconds,
        batch=len(frames),
        compile_seconds=compile_seconds,
    )


def _train_step(module, params, loss_fn, batch, device, train_cfg):
    optimizer = build_optimizer(params, SimpleNamespace(lr=1e-4, eps=1e-8))
    scaler = torch.amp.GradScaler("cuda", enabled=device.type == "cuda" and train_cfg.amp)

    def step():
        with autocast(device, train_cfg):
            total = loss_fn(module, batch)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(total).backward()
        scaler.step(optimizer)
        scaler.update()

    return step


def training_rows(new_model: Callable[[], HF2VAD], loss_weights: dict, args, device) -> list[dict]:
    """One optimiser step of each stage, as the training scripts build them: `new_model` builds
    the model with fresh weights, `loss_weights` are the config's loss section."""
    rows = []
    precisions = [("fp32", FP32)]
    if args.train_low_precision:
        label, train_cfg = low_precision(device)[:2]
        if device.type == "cpu" and not cpu_has_fast_bf16():  # the trainer falls back then
            label += " (run as float32: no fast bf16 kernels)"
        precisions.append((label, train_cfg))
    frames, flows = random_cubes(args.train_batch, device, seed=1)
    stage1_flows = 2.0 * torch.randn(
        args.stage1_batch, 2, 32, 32, generator=torch.Generator().manual_seed(2)
    )
    stage1_flows = stage1_flows.to(device)
    for precision, train_cfg in precisions:
        torch.manual_seed(0)
        model = new_model().to(device).train()

        def stage1_loss(module, flows):
            out = module(flows)
            return memae_loss(out["recon"], flows, out["att_weights"])["total"]

        step = _train_step(
            model.memae, model.memae.parameters(), stage1_loss, stage1_flows, device, train_cfg
        )
        seconds = time_call(step, device, args.repeats, args.warmup)
        rows.append(rate_entry(f"train stage1 {precision}", len(stage1_flows), "flows", seconds))

        for stage in (2, 3):
            model = new_model().to(device).train()
            loss_cfg = dict(loss_weights)
            if stage == 2:
                model.set_memae_frozen(True)
                loss_cfg.update(lambda_recon=0.0, lambda_ent=0.0)
            criterion = build_loss(loss_cfg)

            def loss_fn(module, batch, criterion=criterion):
                return criterion(module(*batch))["total"]

            params = [p for p in model.parameters() if p.requires_grad]
            step = _train_step(model, params, loss_fn, (frames, flows), device, train_cfg)
            seconds = time_call(step, device, args.repeats, args.warmup)
            rows.append(
                rate_entry(f"train stage{stage} {precision}", len(frames), "cubes", seconds)
            )
    return rows


def main() -> None:
    parser = base_parser("bench_models", __doc__.split("\n")[0])
    parser.add_argument("--cfg", default="cfgs/ped2.yaml", help="model settings come from here")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="K=V")
    parser.add_argument("--batch", type=int, default=128, help="inference batch (cubes)")
    parser.add_argument("--micro-batch", type=int, default=32, help="chunk of the batch")
    parser.add_argument("--train-batch", type=int, default=0, help="stage 2/3 (0: config)")
    parser.add_argument("--stage1-batch", type=int, default=0, help="flows (0: config)")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile")
    parser.add_argument("--checkpoint", help="inference with these trained weights (and --cubes)")
    parser.add_argument("--cubes", default="cache/ped2/cubes/testing", help="with --checkpoint")
    parser.add_argument("--train-low-precision", action="store_true")
    parser.add_argument("--skip-train", action="store_true")
    parser.add_argument("--skip-infer", action="store_true")
    args = parser.parse_args()
    cfg = load_config(Path(args.cfg), args.overrides)
    if args.quick:
        args.batch, args.repeats = min(args.batch, 64), min(args.repeats, 2)
        args.train_batch = args.train_batch or 16
        args.stage1_batch = args.stage1_batch or 64
    args.train_batch = args.train_batch or cfg.stage2.batch_size
    args.stage1_batch = args.stage1_batch or cfg.stage1.batch_size
    device = setup(args)
    rows = matmul_rows(args, device)
    print_table(rows, f"matrix product, {device}")
    if not args.skip_infer:
        torch.manual_seed(0)
        model = build_model(cfg.model)
        if args.checkpoint:
            path = Path(args.checkpoint)
            restore_model(model, load_checkpoint(path, cfg), path)
            frames, flows = first_cubes(Path(args.cubes), args.batch, device)
        else:
            frames, flows = random_cubes(args.batch, device)
        infer = inference_rows(model.to(device).eval(), frames, flows, args, device)
        print_table(infer, f"inference, batch {args.batch}, {device}")
        rows += infer
    if not args.skip_train:
        train = training_rows(partial(build_model, cfg.model), cfg.loss.to_dict(), args, device)
        print_table(
            train, f"training steps (stage 1: {args.stage1_batch} flows, 2/3: {args.train_batch})"
        )
        rows += train
    settings = {
        "cfg": args.cfg,
        "overrides": args.overrides,
        "batch": args.batch,
        "micro_batch": args.micro_batch,
        "train_batch": args.train_batch,
        "stage1_batch": args.stage1_batch,
        "warmup": args.warmup,
        "checkpoint": args.checkpoint,
        "cubes": args.cubes if args.checkpoint else None,
    }
    save(args, device, rows, settings)


if __name__ == "__main__":
    main()
