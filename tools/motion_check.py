"""Does a run's frame predictor use motion? Its error on evenly spaced cubes as trained and with
one input taken away, beside references.

    python -m tools.motion_check --run runs/ped2_cpu [--split testing] [--num-cubes 256]
                                 [--all-epochs]

Every row is the S_p of docs/method.md §6 (squared error summed over 3 x 32 x 32) against the target
x5, mean and median over the cubes: the prediction as trained; with zero flows; with the flows of
another cube; without frame history (x1..x3 replaced by x4); then copying x4, and x4 moved by the
true last flow (bilinear backward warp, the flow converted to crop pixels) and, for a hybrid, by
ML-MemAE-SC's reconstruction of it (what the hybrid's CVAE sees). A CVAE that uses motion gets
much worse without its flows; one that ignores them does not. Float32, latents at the posterior
mean. Prints a table; writes JSON (with the checkpoint's identity, so that a report can tell a stale
check) to <run>/eval/motion_check_<split>.json. --all-epochs checks every epoch_NNN.pth of the final
stage (train.keep_epochs) instead: does the use of flows grow with training? It writes
<run>/eval/motion_epochs_<split>.json. --checkpoint checks another checkpoint of the run (e.g.
stage2/best.pth before stage 3's fine-tuning) into motion_check_<split>_<folder>_<name>.json.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F

from datasets import CubeDataset, CubeSource
from engine.checkpoint import checkpoint_identity
from engine.run_dir import RunLayout
from inference.trained_run import load_run, run_config_path
from models import model_type
from tools.published import RECON_WARP
from tools.report import motion_epochs_table
from utils.cli import run_cli
from utils.config import load_config, replaced
from utils.io import write_json


def crop_flow(
    flows: torch.Tensor, boxes: torch.Tensor, units_scale: tuple[float, float] = (1.0, 1.0)
) -> torch.Tensor:
    """Flow [B, 2, S, S] of the S x S crops of boxes [B, 4] (x1, y1, x2, y2; image pixels) ->
    flow in crop pixels: x scaled by S / box width, y by S / box height. units_scale: the (x, y)
    factors of preprocess.flow.units_size that the stored values carry (divided out first)."""
    size = flows.shape[-1]
    scale = size / (boxes[:, 2:] - boxes[:, :2]).clamp(min=1e-6)  # [B, 2] = (sx, sy)
    scale = scale / torch.tensor(units_scale, dtype=scale.dtype)
    return flows * scale[:, :, None, None]


def units_scale(
    units_size: Sequence[int] | None, frame_size: tuple[int, int]
) -> tuple[float, float]:
    """The (x, y) factors by which preprocess.flow.units_size ((height, width), None: frame
    pixels) multiplied flows of frame_size."""
    if units_size is None:
        return (1.0, 1.0)
    return (units_size[1] / frame_size[1], units_size[0] / frame_size[0])


def warp_by_flow(image: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """image [B, C, H, W] moved by flow [B, 2, H, W] (pixels): out(p) = image(p - flow(p))."""
    _, _, height, width = image.shape
    ys, xs = torch.meshgrid(
        torch.arange(height, dtype=image.dtype),
        torch.arange(width, dtype=image.dtype),
        indexing="ij",
    )
    src_x, src_y = xs - flow[:, 0], ys - flow[:, 1]
    grid = torch.stack([2 * src_x / (width - 1) - 1, 2 * src_y / (height - 1) - 1], dim=-1)
    return F.grid_sample(image, grid, align_corners=True, padding_mode="border")


@torch.inference_mode()
def candidate_frames(model, frames, flows, boxes, scale=(1.0, 1.0)) -> dict[str, torch.Tensor]:
    """name -> predicted or reference x5 [B, 3, S, S] for frames [B, 5, 3, S, S], flows
    [B, 4, 2, S, S], boxes [B, 4] and the flows' units_scale. "Another cube" is the one half a
    batch away (evenly spaced cubes: usually another video)."""
    flow_recon = None if model.memae is None else model(frames, flows)["flow_recon"]
    motion = model.cvae_motion(flows, flow_recon)
    inputs, last = frames[:, :-1], frames[:, -2]

    def predict(frame_inputs, motion_inputs):
        return model.cvae(frame_inputs, motion_inputs, sample_latent=False)["frame_pred"]

    true_motion = crop_flow(flows[:, -1], boxes, scale)
    candidates = {
        "prediction (as trained)": predict(inputs, motion),
        "prediction, zero flows": predict(inputs, torch.zeros_like(motion)),
        "prediction, flows of another cube": predict(inputs, motion.roll(len(motion) // 2, 0)),
        "prediction, no frame history (x1..x3 := x4)": predict(
            last[:, None].expand_as(inputs), motion
        ),
        "copy of x4": last,
        "x4 moved by the true last flow": warp_by_flow(last, true_motion),
    }
    if flow_recon is not None:  # how much motion the flows that a hybrid's CVAE sees still hold
        candidates[RECON_WARP] = warp_by_flow(last, crop_flow(flow_recon[:, -1], boxes, scale))
    return candidates


def motion_check(model, dataset: CubeDataset, scale=(1.0, 1.0), batch_size=64) -> dict[str, dict]:
    """name -> {mean, median} of S_p over the dataset's cubes (see candidate_frames)."""
    errors: dict[str, list[torch.Tensor]] = {}
    for start in range(0, len(dataset), batch_size):
        items = [dataset[i] for i in range(start, min(start + batch_size, len(dataset)))]
        frames = torch.stack([item["frames"] for item in items])
        flows = torch.stack([item["flows"] for item in items])
        boxes = torch.from_numpy(dataset.boxes[start : start + len(items)]).float()
        target = frames[:, -1]
        for name, frame in candidate_frames(model, frames, flows, boxes, scale).items():
            errors.setdefault(name, []).append((frame - target).pow(2).flatten(1).sum(dim=1))
    return {
        name: {"mean": float(torch.cat(e).mean()), "median": float(torch.cat(e).median())}
        for name, e in errors.items()
    }


def load_run_model(run_dir: Path, checkpoint: Path | None = None):
    """(config, float32 model in test mode on the CPU, checkpoint path, checkpoint identity);
    the run's evaluated checkpoint unless `checkpoint` names one."""
    overrides = [] if checkpoint is None else [f"eval.checkpoint={checkpoint}"]
    cfg, model, ckpt, ckpt_path = load_run(run_dir, overrides, device="cpu")
    if not model_type(cfg.model.type).uses_flows_for_prediction:
        raise SystemExit(
            f"{run_dir}: model.type is {cfg.model.type!r}; the motion check needs a CVAE that "
            "takes flows (hybrid or cvae)"
        )
    return cfg, model.eval(), ckpt_path, checkpoint_identity(ckpt)


def check_run(run_dir: Path, split: str | None, num_cubes: int, checkpoint=None) -> dict:
    """The motion check of one checkpoint of a run, as the JSON document it is written as."""
    cfg, model, ckpt_path, identity = load_run_model(run_dir, checkpoint)
    split = split or cfg.data.test_split
    dataset = CubeSource.from_config(cfg).open(split, max_cubes=num_cubes)
    scale = units_scale(cfg.preprocess.flow.units_size, dataset.manifest["frame_size"])
    rows = motion_check(model, dataset, scale)
    doc = {"run": str(run_dir), "checkpoint": {"path": str(ckpt_path), **identity}}
    return {**doc, "split": split, "num_cubes": len(dataset), "rows": rows}


def kept_epochs(run_dir: Path) -> list[Path]:
    """The epoch_NNN.pth of the run's final stage, in order (needs train.keep_epochs)."""
    cfg = replaced(load_config(run_config_path(run_dir)), {"run_dir": str(run_dir)})
    layout = RunLayout.from_config(cfg)
    paths = layout.kept_epoch_checkpoints()
    if not paths:
        folder = layout.final_stage_dir
        raise SystemExit(f"no epoch_NNN.pth in {folder}: train with train.keep_epochs=true")
    return paths


def check_epochs(run_dir: Path, split: str | None, num_cubes: int) -> tuple[Path, dict]:
    """Motion check of every kept epoch; writes the documents and returns (path, document)."""
    docs = [check_run(run_dir, split, num_cubes, path) for path in kept_epochs(run_dir)]
    out = run_dir / "eval" / f"motion_epochs_{docs[0]['split'].replace('/', '_')}.json"
    doc = {"run": str(run_dir), "epochs": docs}
    write_json(out, doc)
    return out, doc


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", type=Path, required=True, help="a trained run directory")
    parser.add_argument("--split", default=None, help="cube split (default: the test split)")
    parser.add_argument("--num-cubes", type=int, default=256, help="evenly spaced cubes")
    which = parser.add_mutually_exclusive_group()
    which.add_argument(
        "--all-epochs", action="store_true", help="every epoch_NNN.pth (train.keep_epochs)"
    )
    which.add_argument(
        "--checkpoint", type=Path, help="another checkpoint than the evaluated one (e.g. stage 2's)"
    )
    args = parser.parse_args(argv)
    if args.all_epochs:
        out, doc = check_epochs(args.run, args.split, args.num_cubes)
        print("\n".join(motion_epochs_table(out, doc)[3:]) + f"\n\nwritten to {out}")
        return
    doc = check_run(args.run, args.split, args.num_cubes, args.checkpoint)
    print(
        f"{args.run} ({doc['checkpoint']['path']}), {doc['num_cubes']} {doc['split']} cubes; "
        "S_p against x5:\n"
    )
    print("| x5 estimate | mean S_p | median S_p |\n|---|---|---|")
    for name, row in doc["rows"].items():
        print(f"| {name} | {row['mean']:.2f} | {row['median']:.2f} |")
    name = f"motion_check_{doc['split'].replace('/', '_')}"
    if args.checkpoint is not None:  # beside the evaluated checkpoint's check, not over it
        checkpoint = args.checkpoint.resolve()
        name += f"_{checkpoint.parent.name}_{checkpoint.stem}"
        doc["explicit_checkpoint"] = True
    out = args.run / "eval" / f"{name}.json"
    write_json(out, doc)
    print(f"\nwritten to {out}")


if __name__ == "__main__":
    run_cli(main, "tools.motion_check")
