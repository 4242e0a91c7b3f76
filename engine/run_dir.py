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
from dataclasses import dataclass
from pathlib import Path

from models import model_type
from utils.io import read_json, write_json
from utils.misc import git_commit


@dataclass(frozen=True)
class RunLayout:
    """Where a run's stages and evaluation write, which stages it trains and which checkpoint
    is evaluated. `stages`: the training stages of the model type in order (models/types.py),
    without stage 1 when `stage1_from` names a finished one elsewhere, without stage 3 when it
    has no epochs. `eval_checkpoint`: best, last or a path."""

    root: Path
    stages: tuple[int, ...]
    eval_checkpoint: str = "best"
    stage1_from: str | None = None

    @classmethod
    def from_config(cls, cfg) -> RunLayout:
        stages = list(model_type(cfg.model.type).stages)
        if 3 in stages and cfg.stage3.num_epochs <= 0:
            stages.remove(3)
        stage1_from = cfg.train.stage1_from or None
        stages = [s for s in stages if not (s == 1 and stage1_from)]
        return cls(Path(cfg.run_dir), tuple(stages), str(cfg.eval.checkpoint), stage1_from)

    def stage_dir(self, stage: int) -> Path:
        return self.root / f"stage{stage}"

    @property
    def eval_dir(self) -> Path:
        return self.root / "eval"

    @property
    def final_stage_dir(self) -> Path:
        return self.stage_dir(self.stages[-1])

    def kept_epoch_checkpoints(self) -> list[Path]:
        """The epoch_NNN.pth of the final training stage, in order (written with
        train.keep_epochs; empty without)."""
        return sorted(self.final_stage_dir.glob("epoch_*.pth"))

    def eval_checkpoint_path(self) -> Path:
        """best/last of the final stage (`stage1_from` for a memae that trains nothing here), or
        the path given as eval_checkpoint."""
        if self.eval_checkpoint not in ("best", "last"):
            return Path(self.eval_checkpoint)
        if not self.stages:
            return Path(self.stage1_from)
        return self.final_stage_dir / f"{self.eval_checkpoint}.pth"

    def record_times(self, seconds: dict) -> None:
        """Append this invocation (command, commit, seconds of the steps that did work) to
        <root>/pipeline_times.json, so a run split over several invocations keeps every time."""
        path = self.root / "pipeline_times.json"
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
