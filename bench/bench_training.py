"""Our training steps against the reference execution's (bench/reference.py), timed in one process.

    python -m bench.bench_training [--threads 2] [--batch 64] [--recon-epochs 16] [--stage1-only]

One optimiser step (forward, loss, backward, Adam) of each stage at the paper's model size on one
random batch, interleaved (reference, ours, reference, ours, ...), so that every training-speed
claim is a ratio measured on the same machine at the same moment (issue 16):
- stage 1 (ML-MemAE-SC on the last flow): the reference in float32 with PyTorch's default Adam;
  ours as trained (bf16 autocast on the CPU, fused Adam) and in float32.
- stage 2 (CVAE, ML-MemAE-SC frozen): the reference runs the frozen ML-MemAE-SC on each of the 4
  flows on every step; ours reads the reconstructions computed once per cube before training,
  whose cost is added here spread over `--recon-epochs` epochs (cfgs/ped2_cpu.yaml trains 16).
- stage 3 (both jointly): the reference sends each flow through ML-MemAE-SC separately; ours
  sends all of them in one batch.
The batch sits in memory for both sides (loading runs in DataLoader workers in training).
Prints the table and the ratios, and writes JSON with the CPU's model and instruction-set flags.
"""

from __future__ import annotations

import contextlib
import statistics
from pathlib import Path

import torch

from bench.bench_models import random_cubes
from bench.common import base_parser, interleaved, print_table, save, setup
from bench.reference import reference_copy, reference_outputs
from models import build_loss, build_model, memae_loss
from utils.config import load_config


def _autocast(bf16: bool):
    return torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()


def _step(params, loss_of, bf16: bool, fused: bool):
    """A call that runs one optimiser step of `loss_of()` (the reference: PyTorch's default Adam,
    ours: the fused one, as engine.trainer builds it)."""
    optimizer = torch.optim.Adam(params, lr=1e-5, fused=True if fused else None)

    def step():
        with _autocast(bf16):
            total = loss_of()["total"]
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        optimizer.step()

    return step


def stage1_calls(ours, reference, flows, loss_weights) -> dict:
    last = flows[:, -1]

    def loss_of(memae):
        def losses():
            out = memae(last)
            return memae_loss(
                out["recon"],
                last,
                out["att_weights"],
                loss_weights["lambda_recon"],
                loss_weights["lambda_ent"],
            )

        return losses

    return {
        "stage1 reference float32": _step(
            reference.memae.parameters(), loss_of(reference.memae), False, False
        ),
        "stage1 ours float32": _step(ours.memae.parameters(), loss_of(ours.memae), False, True),
        "stage1 ours bf16 (as trained)": _step(
            ours.memae.parameters(), loss_of(ours.memae), True, True
        ),
    }


def stage2_calls(ours, reference, frames, flows, loss_weights) -> tuple[dict, dict]:
    """The step calls and the once-per-cube reconstruction calls (ours, float32 and bf16)."""
    for model in (ours, reference):
        model.set_memae_frozen(True)
    criterion = build_loss({**loss_weights, "lambda_recon": 0.0, "lambda_ent": 0.0})
    cvae_ours = [p for p in ours.parameters() if p.requires_grad]
    cvae_reference = [p for p in reference.parameters() if p.requires_grad]
    recon = {}

    def reconstruct(bf16: bool):
        def call():
            with torch.no_grad(), _autocast(bf16):
                recon[bf16] = ours.memae(flows.flatten(0, 1))["recon"].float().view_as(flows)

        return call

    for bf16 in (False, True):
        reconstruct(bf16)()

    def ours_loss(bf16):
        return lambda: criterion(ours(frames, flows, flow_recon=recon[bf16]))

    steps = {
        "stage2 reference float32": _step(
            cvae_reference,
            lambda: criterion(reference_outputs(reference, frames, flows)),
            False,
            False,
        ),
        "stage2 reference bf16 autocast": _step(
            cvae_reference,
            lambda: criterion(reference_outputs(reference, frames, flows)),
            True,
            False,
        ),
        "stage2 ours float32": _step(cvae_ours, ours_loss(False), False, True),
        "stage2 ours bf16 (as trained)": _step(cvae_ours, ours_loss(True), True, True),
    }
    once = {
        "stage2 ours float32: reconstructions once": reconstruct(False),
        "stage2 ours bf16: reconstructions once": reconstruct(True),
    }
    return steps, once


def stage3_calls(ours, reference, frames, flows, loss_weights) -> dict:
    for model in (ours, reference):
        model.set_memae_frozen(False)
    criterion = build_loss(dict(loss_weights))
    return {
        "stage3 reference float32": _step(
            reference.parameters(),
            lambda: criterion(reference_outputs(reference, frames, flows)),
            False,
            False,
        ),
        "stage3 ours float32": _step(
            ours.parameters(), lambda: criterion(ours(frames, flows)), False, True
        ),
        "stage3 ours bf16 (as trained)": _step(
            ours.parameters(), lambda: criterion(ours(frames, flows)), True, True
        ),
    }


def ratios(per_sample: dict[str, float]) -> dict[str, float]:
    """Reference seconds per sample over ours, for the comparisons issue 16 sets targets for."""
    s = per_sample
    if "stage2 ours float32" not in s:  # --stage1-only
        return {
            "stage1 ours bf16 / reference float32": s["stage1 reference float32"]
            / s["stage1 ours bf16 (as trained)"],
            "stage1 ours bf16 / ours float32": s["stage1 ours float32"]
            / s["stage1 ours bf16 (as trained)"],
        }
    return {
        "stage1 ours bf16 / reference float32": s["stage1 reference float32"]
        / s["stage1 ours bf16 (as trained)"],
        "stage2 ours float32 / reference float32": s["stage2 reference float32"]
        / s["stage2 ours float32"],
        "stage2 ours bf16 / reference bf16": s["stage2 reference bf16 autocast"]
        / s["stage2 ours bf16 (as trained)"],
        "stage2 ours bf16 / reference float32": s["stage2 reference float32"]
        / s["stage2 ours bf16 (as trained)"],
        "stage3 ours bf16 / reference float32": s["stage3 reference float32"]
        / s["stage3 ours bf16 (as trained)"],
        "stage3 ours float32 / reference float32": s["stage3 reference float32"]
        / s["stage3 ours float32"],
    }


def later_stages(ours, reference, frames, flows, loss_weights, args) -> dict:
    """Seconds of every stage-2 and stage-3 call, interleaved as stage 1's."""
    steps, once = stage2_calls(ours, reference, frames, flows, loss_weights)
    seconds = interleaved(steps, args.repeats, args.warmup)
    seconds.update(interleaved(once, args.repeats, args.warmup))
    stage3 = stage3_calls(ours, reference, frames, flows, loss_weights)
    seconds.update(interleaved(stage3, args.repeats, args.warmup))
    return seconds


def main() -> None:
    parser = base_parser("bench_training", __doc__.split("\n")[0])
    parser.add_argument("--cfg", default="cfgs/ped2.yaml")
    parser.add_argument("--batch", type=int, default=64, help="cfgs/ped2_cpu.yaml trains with 64")
    parser.add_argument(
        "--recon-epochs", type=int, default=16, help="stage-2 epochs the reconstructions serve"
    )
    parser.add_argument(
        "--stage1-only",
        action="store_true",
        help="stage 1 only: minutes where bf16 is emulated (CPUs without AVX-512 or AMX)",
    )
    args = parser.parse_args()
    if args.quick:
        args.batch, args.repeats, args.warmup = 16, 1, 1
    device = setup(args)
    if device.type != "cpu":
        raise SystemExit("bench_training: the reference comparison runs on the CPU")
    cfg = load_config(Path(args.cfg))
    torch.manual_seed(0)
    ours = build_model(cfg.model).train()
    reference = reference_copy(ours).train()
    frames, flows = random_cubes(args.batch, device)
    seconds = interleaved(
        stage1_calls(ours, reference, flows, cfg.loss.to_dict()), args.repeats, args.warmup
    )
    if not args.stage1_only:
        seconds.update(later_stages(ours, reference, frames, flows, cfg.loss.to_dict(), args))
    medians = {name: statistics.median(s) for name, s in seconds.items()}
    per_sample = {name: m / args.batch for name, m in medians.items()}
    # ours pays for its reconstructions once per cube, spread over the epochs they serve
    for step, once in (
        ("stage2 ours float32", "stage2 ours float32: reconstructions once"),
        ("stage2 ours bf16 (as trained)", "stage2 ours bf16: reconstructions once"),
    ):
        if step in per_sample:
            per_sample[step] += per_sample[once] / args.recon_epochs
    rows = [
        {
            "name": name,
            "unit": "samples",
            "per_second": 1.0 / per_sample[name],
            "median_seconds": medians[name],
            "seconds": seconds[name],
        }
        for name in seconds
    ]
    print_table(rows, f"one training step of {args.batch} cubes: reference vs ours, interleaved")
    if not args.stage1_only:
        print(f"(stage 2 ours: step plus its reconstructions once per cube / {args.recon_epochs})")
    found = ratios(per_sample)
    for name, ratio in found.items():
        print(f"{name}: {ratio:.2f}x")
    settings = {
        "cfg": args.cfg,
        "batch": args.batch,
        "recon_epochs": args.recon_epochs,
        "stage1_only": args.stage1_only,
    }
    save(args, device, rows + [{"name": k, "ratio": v} for k, v in found.items()], settings)


if __name__ == "__main__":
    main()
