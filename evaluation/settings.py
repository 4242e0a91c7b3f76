"""What an evaluation reads from the config, read once (EvalSettings.from_config): the scores
and the frame protocol, where the run and the test cubes are, what the outputs record."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from datasets.cubes import CubeSource
from datasets.labels import LabelSource
from engine.run_dir import RunLayout
from scoring.frame_scores import FrameProtocol
from scoring.weights import ScoreSet


@dataclass(frozen=True)
class EvalSettings:
    """name, model_type: of the run; scores, protocol: how object scores become frame scores
    and AUROC; border_margin: objects within it of the image border are z-scored with their
    group's statistics (None: eval.border_stats off); labels, layout, test_cubes: where things
    are; val_videos: the validation split (for the checkpoint note); deterministic: test mode;
    seed: of the latent samples (without test mode); batch_size, num_workers: of the scoring
    passes; num_grid_objects, plots: the figures; config: the resolved config as a plain dict
    (saved with the outputs; its fingerprints say what the scores belong to)."""

    name: str
    model_type: str
    scores: ScoreSet
    protocol: FrameProtocol
    border_margin: float | None
    labels: LabelSource
    layout: RunLayout
    test_cubes: Path
    val_videos: tuple[str, ...]
    deterministic: bool
    seed: int
    batch_size: int
    num_workers: int
    num_grid_objects: int
    plots: bool
    config: dict

    @classmethod
    def from_config(cls, cfg) -> EvalSettings:
        return cls(
            name=str(cfg.name),
            model_type=str(cfg.model.type),
            scores=ScoreSet.from_config(cfg),
            protocol=FrameProtocol.from_config(cfg),
            border_margin=float(cfg.eval.border_margin) if cfg.eval.border_stats else None,
            labels=LabelSource.from_config(cfg),
            layout=RunLayout.from_config(cfg),
            test_cubes=CubeSource.from_config(cfg).folder(cfg.data.test_split),
            val_videos=tuple(cfg.train.val_videos),
            deterministic=bool(cfg.model.deterministic),
            seed=int(cfg.seed),
            batch_size=int(cfg.eval.batch_size),
            num_workers=int(cfg.eval.num_workers),
            num_grid_objects=int(cfg.eval.num_grid_objects),
            plots=bool(cfg.eval.plots),
            config=cfg.to_dict(),
        )

    def protocol_record(self) -> dict:
        """The frame protocol as metrics.json records it."""
        p = self.protocol
        return {
            "drop_first": p.drop_first,
            "smoothing": p.smoothing,
            "window": p.window,
            "sigma": p.sigma,
            "track_window": p.tracks.window,
            "track_iou": p.tracks.min_iou,
            "border_stats": self.border_margin is not None,
            "border_margin": self.config["eval"]["border_margin"],
        }
