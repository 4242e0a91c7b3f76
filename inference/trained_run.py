"""A trained run ready to score new footage: its config, model in test mode, training statistics
and pre-processing tools (used by inference.detect)."""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from datasets import CubeSource
from engine.checkpoint import checkpoint_identity, load_checkpoint, restore_model
from engine.run_dir import RunLayout
from inference.runtimes import ExportedModel, exported_model
from models import ScoringModel, build_model, scoring_model
from models.export import export_onnx, graph_outputs, read_metadata
from pre_process.boxes import BoxExtractor, touches_border
from pre_process.flow import build_flow_estimator
from pre_process.stream import stream_cubes
from scoring.appearance import AppearanceBank, build_appearance, grey_crops
from scoring.frame_scores import (
    empty_frame_score,
    fuse_scores,
)
from scoring.statistics import (
    ScoringSettings,
    border_groups,
    cached_object_errors,
    cached_statistics,
    scoring_dtype,
    training_object_errors,
    training_statistics,
)
from scoring.weights import ScoreSet, Weights
from utils.config import Config, load_config, replaced
from utils.misc import resolve_device

CONFIG_CANDIDATES = (
    "config.yaml",
    "eval/config.yaml",
    "stage3/config.yaml",
    "stage2/config.yaml",
    "stage1/config.yaml",
)


class DetectError(ValueError):
    """An input, run directory or option that detect cannot use; the message names it."""


@dataclass
class TrainedRun:
    """A trained run loaded once, ready to score: config, model in test mode, checkpoint, training
    statistics; the pre-processing tools for new footage are built on first use."""

    cfg: Config
    model: torch.nn.Module
    stats: dict
    ckpt: dict
    ckpt_path: Path
    device: torch.device
    appearance: AppearanceBank | None = None  # with eval.w_a > 0 (scoring/appearance.py)
    train_s_a: np.ndarray | None = None  # S_a of every training cube, in the cubes' order

    @functools.cached_property
    def cubes(self) -> CubeSource:
        """Where the run's cubes are (the training cubes give statistics and thresholds)."""
        return CubeSource.from_config(self.cfg)

    @property
    def scoring(self) -> ScoringSettings:
        """What the object scores (and so the training statistics) depend on."""
        return ScoringSettings.from_config(self.cfg, self.device)

    def training_object_errors(self) -> dict | None:
        """Per-object training errors: cached beside the checkpoint, else computed from the
        training cubes, else None."""
        cubes = self.cubes
        if not cubes.has(cubes.train_split):
            return cached_object_errors(self.scoring, self.ckpt, self.ckpt_path)
        return training_object_errors(
            self.scoring,
            self.model,
            functools.partial(cubes.open, cubes.train_split),
            self.ckpt,
            self.ckpt_path,
            self.device,
        )

    @property
    def weights(self) -> Weights:
        """(w_r, w_p, w_a, w_kl) of eval.py's main score (a missing branch has weight 0)."""
        return ScoreSet.from_config(self.cfg).primary_weights

    def fuse(
        self,
        s_r: np.ndarray,
        s_p: np.ndarray,
        boxes=None,
        frame_size=None,
        s_a=None,
        s_kl=None,
    ) -> np.ndarray:
        """Fused object scores; with eval.border_stats, `boxes` [N, 4] and the frame size
        (height, width) say which objects are cut by the image border."""
        border = None
        if self.cfg.eval.border_stats:
            border = touches_border(boxes, frame_size, self.cfg.eval.border_margin)
        w_r, w_p, w_a, w_kl = self.weights
        optional = dict(s_a=s_a, w_a=w_a, s_kl=s_kl, w_kl=w_kl)
        return fuse_scores(s_r, s_p, self.stats, w_r, w_p, border=border, **optional)

    @property
    def empty_score(self) -> float:
        w_r, w_p, w_a, w_kl = self.weights
        grouped = self.cfg.eval.border_stats
        return empty_frame_score(self.stats, w_r, w_p, grouped=grouped, w_a=w_a, w_kl=w_kl)

    def appearance_novelty(self, target_frames: np.ndarray) -> np.ndarray | None:
        """S_a of objects from their target-frame crops uint8 [N, H, W, 3] (None when off)."""
        if self.appearance is None:
            return None
        bf16 = self.scoring.precision == torch.bfloat16
        return self.appearance.novelty(grey_crops(target_frames), bf16=bf16)

    def stream(self, frames):
        """StreamFrames (boxes, flow, cubes) of `frames` with the run's pre-processing."""
        cube_cfg, flow_cfg = self.cfg.preprocess.cubes, self.cfg.preprocess.flow
        return stream_cubes(
            frames,
            self.boxes,
            self.flow,
            flow_cfg.first_frame,
            flow_cfg.dtype,
            cube_cfg.size,
            cube_cfg.num_frames,
            float(cube_cfg.border_aspect),
        )

    @functools.cached_property
    def boxes(self) -> BoxExtractor:
        return BoxExtractor(self.cfg.preprocess.boxes, self.device)

    @functools.cached_property
    def flow(self):
        return build_flow_estimator(self.cfg.preprocess.flow, self.device)


def run_config_path(run_dir: Path) -> Path:
    """The saved config of a run directory (see CONFIG_CANDIDATES)."""
    if not run_dir.is_dir():
        raise DetectError(f"run directory not found: {run_dir}")
    for name in CONFIG_CANDIDATES:
        if (run_dir / name).is_file():
            return run_dir / name
    raise DetectError(
        f"{run_dir} is not a training run directory: none of {', '.join(CONFIG_CANDIDATES)} "
        f"exists (train one with: python run_pipeline.py --cfg <config>)"
    )


def load_run(run_dir: str | Path, overrides: Iterable[str] = (), device: str | None = None):
    """(config, trained model, checkpoint, checkpoint path) of a run directory; `overrides` are
    dotted key=value settings on top of the saved config (settings the checkpoint depends on
    are checked against it)."""
    run_dir = Path(run_dir)
    cfg = load_config(run_config_path(run_dir), overrides)
    changes = {"run_dir": str(run_dir)}  # the folder may have moved since training
    if device is not None:
        changes["device"] = device
    cfg = replaced(cfg, changes)
    ckpt_path = RunLayout.from_config(cfg).eval_checkpoint_path()
    if not ckpt_path.is_file():
        raise DetectError(
            f"run directory {run_dir} has no trained model: {ckpt_path} is missing "
            f"(eval.checkpoint={cfg.eval.checkpoint}; finish training with "
            f"python run_pipeline.py --cfg {run_config_path(run_dir)})"
        )
    ckpt = load_checkpoint(ckpt_path, cfg, map_location=resolve_device(cfg.device))
    model = build_model(cfg.model)
    restore_model(model, ckpt, ckpt_path)
    return cfg, model, ckpt, ckpt_path


def load_trained_run(run_dir: str | Path, overrides: Iterable[str] = (), device: str | None = None):
    """The run directory's model ready for scoring, with its training statistics (see load_run
    for `overrides`; eval.* settings for instance)."""
    cfg, model, ckpt, ckpt_path = load_run(run_dir, overrides, device)
    return _build_trained_run(cfg, model, ckpt, ckpt_path)


def trained_run_from_config(cfg) -> TrainedRun:
    """The trained model of the run that `cfg` describes (cfg.run_dir, eval.checkpoint), ready
    for scoring, with its training statistics (computed and cached when missing)."""
    ckpt_path = RunLayout.from_config(cfg).eval_checkpoint_path()
    ckpt = load_checkpoint(ckpt_path, cfg, map_location=resolve_device(cfg.device))
    model = build_model(cfg.model)
    restore_model(model, ckpt, ckpt_path)
    return _build_trained_run(cfg, model, ckpt, ckpt_path)


def _build_trained_run(cfg, model, ckpt: dict, ckpt_path: Path) -> TrainedRun:
    """The builder's last step: the restored model prepared for scoring, with its statistics
    (and the appearance bank when the main score uses S_a)."""
    device = resolve_device(cfg.device)
    execution = Execution.from_config(cfg, device)
    if execution.backend == "torch":
        model = prepare_scoring_model(model, execution, device)
    else:
        shape = ExportShape.from_config(cfg)
        model = exported_scoring_model(model, ckpt, ckpt_path, shape, execution, device)
    run = TrainedRun(cfg, model, {}, ckpt, ckpt_path, device)
    run.stats = _training_stats(run)
    if ScoreSet.from_config(cfg).uses_appearance:
        _check_appearance_inputs(Path(cfg.run_dir) / "appearance_bank.npz", run.cubes)
        run.appearance, run.train_s_a = build_appearance(cfg)
        run.stats = dict(
            run.stats, mean_a=float(run.train_s_a.mean()), std_a=float(run.train_s_a.std())
        )
    if cfg.eval.border_stats:
        run.stats = dict(run.stats, groups=_border_groups(run))
    return run


def _check_appearance_inputs(saved: Path, cubes: CubeSource) -> None:
    """The appearance bank comes from the run directory (`saved`) or the training cubes."""
    if not saved.is_file() and not cubes.has(cubes.train_split):
        raise DetectError(
            f"eval.w_a > 0 needs the appearance bank {saved} or the training cubes in "
            f"{cubes.folder(cubes.train_split)}; run eval.py on the run first, or pass "
            "--set eval.w_a=0"
        )


def _training_stats(run: TrainedRun) -> dict:
    """The saved training statistics of the checkpoint; computed when missing and possible."""
    stats = cached_statistics(run.scoring, run.ckpt, run.ckpt_path)
    if stats is not None:
        return stats
    cubes = run.cubes
    if cubes.has(cubes.train_split):
        training_cubes = functools.partial(cubes.open, cubes.train_split)
        return training_statistics(
            run.scoring, run.model, training_cubes, run.ckpt, run.ckpt_path, run.device
        )
    raise DetectError(
        f"no training statistics for {run.ckpt_path}: {run.scoring.stats_path(run.ckpt_path)} "
        f"is missing or belongs to another checkpoint, and the training cubes to compute them "
        f"are not in {cubes.folder(cubes.train_split)} (run eval.py on the run first)"
    )


def _border_groups(run: TrainedRun) -> dict:
    """Per-group training statistics (eval.border_stats) from the cached per-object training
    errors, or from the training cubes."""
    objects = run.training_object_errors()
    if objects is None:
        path = run.scoring.stats_path(run.ckpt_path, "train_object_scores.npz")
        raise DetectError(
            f"eval.border_stats needs the per-object training errors of {run.ckpt_path} "
            f"({path}) or the training cubes; "
            "run eval.py on the run first, or pass --set eval.border_stats=false"
        )
    return border_groups(objects, run.cfg.eval.border_margin, run.train_s_a)


@dataclass(frozen=True)
class Execution:
    """How the restored model runs when scoring: in PyTorch (folded weight and batch norms with
    `fuse`, NHWC with `channels_last`, autocast to `precision`) or as the exported graph in
    `backend`; on CPU in micro-batches of `micro_batch` cubes."""

    backend: str = "torch"
    fuse: bool = True
    channels_last: bool = True
    precision: torch.dtype | None = None  # autocast dtype (None: float32)
    micro_batch: int = 32

    @classmethod
    def from_config(cls, cfg, device: torch.device) -> Execution:
        return cls(
            backend=cfg.eval.backend,
            fuse=bool(cfg.eval.fuse),
            channels_last=bool(cfg.eval.channels_last),
            precision=scoring_dtype(bool(cfg.eval.bf16_cpu), bool(cfg.eval.amp), device),
            micro_batch=int(cfg.eval.cpu_micro_batch) if device.type == "cpu" else 0,
        )


@dataclass(frozen=True)
class ExportShape:
    """What an exported scoring graph is made for: the model type, test mode (`deterministic`:
    only test mode can be exported) and the cube shape."""

    model_type: str
    deterministic: bool
    cube_size: int
    num_frames: int

    @classmethod
    def from_config(cls, cfg) -> ExportShape:
        cubes = cfg.preprocess.cubes
        return cls(cfg.model.type, bool(cfg.model.deterministic), cubes.size, cubes.num_frames)


def export_path(ckpt_path: Path) -> Path:
    """Where a checkpoint's exported scoring graph lives: stage3/best.pth -> stage3/best.onnx."""
    return ckpt_path.with_suffix(".onnx")


def export_for_scoring(
    model: torch.nn.Module, ckpt: dict, ckpt_path: Path, shape: ExportShape
) -> tuple[Path, dict]:
    """The checkpoint's exported graph and its metadata, exported first when missing or made
    from another checkpoint (export.py does the same on demand)."""
    if not shape.deterministic:
        raise ValueError(
            "an exported graph scores in test mode only (model.deterministic: true); sampled "
            "latents need eval.backend=torch"
        )
    path = export_path(ckpt_path)
    made_from = {"checkpoint": checkpoint_identity(ckpt), "model_type": shape.model_type}
    metadata = read_metadata(path) if path.is_file() else {}
    stale = {k: metadata.get(k) for k in made_from} != made_from
    if stale or metadata.get("outputs") != list(graph_outputs(model)):  # or made by older code
        size, count = shape.cube_size, shape.num_frames
        frames = torch.zeros(2, count, 3, size, size)
        flows = torch.zeros(2, count - 1, 2, size, size)
        export_onnx(model, path, frames, flows, made_from)
        metadata = read_metadata(path)
    return path, metadata


def exported_scoring_model(
    model: torch.nn.Module,
    ckpt: dict,
    ckpt_path: Path,
    shape: ExportShape,
    execution: Execution,
    device: torch.device,
) -> ExportedModel:
    """The restored model as an exported graph in `execution.backend` (onnxruntime or
    openvino; bf16 with OpenVINO only)."""
    backend = execution.backend
    if device.type != "cpu":
        raise ValueError(f"eval.backend={backend} runs on the CPU: set device=cpu")
    bf16 = execution.precision == torch.bfloat16
    if backend == "onnxruntime" and bf16:  # before a needless export
        raise ValueError(
            "eval.backend=onnxruntime scores in float32 only: set eval.bf16_cpu=false, or use "
            "eval.backend=openvino for bf16"
        )
    path, metadata = export_for_scoring(model, ckpt, ckpt_path, shape)
    return exported_model(
        path, backend, metadata["outputs"], micro_batch=execution.micro_batch, bf16=bf16
    )


def prepare_scoring_model(
    model: torch.nn.Module, execution: Execution, device: torch.device
) -> ScoringModel:
    """The restored model as eval.py and detect.py score with it (models/inference.py)."""
    return scoring_model(
        model.to(device).eval(),
        fuse=execution.fuse,
        channels_last=execution.channels_last,
        autocast_dtype=execution.precision,
        micro_batch=execution.micro_batch,
    )
