"""The layout of a run directory: which stages a config trains, where each stage and the
evaluation write, which checkpoint is evaluated, and the log of step times.

Run directory (`cfg.run_dir`):

    stage1/ stage2/ stage3/   last.pth, best.pth, config.yaml, tb/ (TensorBoard),
                              <ckpt>.train_stats[.bfloat16].json beside the checkpoint eval
                              used (one file per scoring precision),
                              epoch_NNN.pth when train.keep_epochs is set
    eval/                     scores.json, metrics.json, config.yaml, roc.png,
                              curves/<video>.png, objects_highest.png, objects_lowest.png;
                              epochs.json and epochs/epoch_NNN/ with `eval.py --all-epochs`
    pipeline_times.json       the time of every step, one entry per invocation
"""

from __future__ import annotations

import datetime
import sys
from pathlib import Path

from models import model_type
from utils.io import read_json, write_json
from utils.misc import git_commit


def stage_dir(cfg, stage: int) -> Path:
    return Path(cfg.run_dir) / f"stage{stage}"


def eval_dir(cfg) -> Path:
    return Path(cfg.run_dir) / "eval"


def stages_for(cfg) -> list[int]:
    """The training stages of the configured model type, in order (models/types.py); stage 1
    is left out when `train.stage1_from` names a finished one, stage 3 when it has no epochs."""
    stages = list(model_type(cfg.model.type).stages)
    if 3 in stages and cfg.stage3.num_epochs <= 0:
        stages.remove(3)
    return [s for s in stages if not (s == 1 and cfg.train.stage1_from)]


def kept_epoch_checkpoints(cfg) -> list[Path]:
    """The epoch_NNN.pth of the final training stage, in order (written with
    train.keep_epochs; empty without)."""
    return sorted(stage_dir(cfg, stages_for(cfg)[-1]).glob("epoch_*.pth"))


def eval_checkpoint_path(cfg) -> Path:
    """best/last of the final stage (`train.stage1_from` for a memae that trains nothing here),
    or the path given in eval.checkpoint."""
    choice = cfg.eval.checkpoint
    if choice not in ("best", "last"):
        return Path(choice)
    stages = stages_for(cfg)
    if not stages:
        return Path(cfg.train.stage1_from)
    return stage_dir(cfg, stages[-1]) / f"{choice}.pth"


def record_times(cfg, seconds: dict) -> None:
    """Append this invocation (command, commit, seconds of the steps that did work) to
    <run_dir>/pipeline_times.json, so a run split over several invocations keeps every time."""
    path = Path(cfg.run_dir) / "pipeline_times.json"
    history = read_json(path) if path.is_file() else []
    history.append(
        {
            "finished": datetime.datetime.now().isoformat(timespec="seconds"),
            "command": " ".join(sys.argv),
            "commit": git_commit(),
            "seconds": {k: round(v, 1) for k, v in seconds.items()},
        }
    )
    write_json(path, history)
