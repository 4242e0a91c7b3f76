"""Checkpoints: writing, reading (weights only, no pickle) and restoring them.

A checkpoint is a dict of plain values and tensors (loadable with `weights_only=True`): `model`
(state dict of the trained module: the ML-MemAE-SC alone in stage 1, the whole HF2VAD after),
`optimizer`, `scheduler`, `scaler`, `epoch` (epochs completed), `step`, `epoch_loss`, `best_loss`,
`config` (the resolved config) and `fingerprints` (hashes of the model and data settings). Loading
against a config whose model or data settings differ fails and names the differing keys.
"""

from __future__ import annotations

import os
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from utils.fingerprint import CheckpointError, check_fingerprints, fingerprints, plain
from utils.io import atomic_write

FORMAT = "hf2vad-checkpoint-1"


def save_checkpoint(path: str | os.PathLike, state: dict, cfg, module: str) -> None:
    """Write `state` (model, optimizer, ... as plain values) plus config and fingerprints;
    saved_at is the state's own when it has one (copies of one epoch share their identity)."""
    config = plain(cfg)
    payload = dict(
        state,
        format=FORMAT,
        module=module,
        config=config,
        fingerprints=fingerprints(cfg, module),
        saved_at=state.get("saved_at") or datetime.now(UTC).isoformat(),
    )
    try:
        atomic_write(path, lambda tmp: torch.save(payload, tmp))
    except (OSError, RuntimeError) as err:  # torch reports a full disk as a RuntimeError
        path = Path(path)
        free = shutil.disk_usage(path.parent).free
        raise CheckpointError(
            f"cannot write checkpoint {path} ({free / 2**20:.0f} MiB free on that disk; "
            f"{type(err).__name__}: {first_line(err)}); any previous {path.name} is unchanged"
        ) from None


def first_line(err: BaseException, limit: int = 200) -> str:
    """The first line of an exception's message (torch's can run to pages)."""
    lines = str(err).splitlines()
    return lines[0][:limit] if lines else type(err).__name__


def load_checkpoint(path: str | os.PathLike, cfg=None, map_location: Any = "cpu") -> dict:
    """Read a checkpoint (weights only, no pickle); with `cfg`, check it was made for it."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    if path.stat().st_size == 0:
        raise CheckpointError(f"cannot read checkpoint {path}: the file is empty (truncated)")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises several types for damaged files
        raise CheckpointError(
            f"cannot read checkpoint {path}: the file is truncated, damaged or not a checkpoint "
            f"of this project ({type(err).__name__}: {first_line(err)})"
        ) from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a checkpoint of this project (format {FORMAT})")
    if cfg is not None:
        check_fingerprints(
            ckpt["fingerprints"], ckpt["config"], cfg, ckpt["module"], f"checkpoint {path}"
        )
    return ckpt


def checkpoint_identity(ckpt: dict) -> dict:
    """What a derived file (training statistics) records to know which checkpoint it belongs to."""
    return {k: ckpt[k] for k in ("module", "epoch", "step", "saved_at", "fingerprints")}


def restore_model(model: torch.nn.Module, ckpt: dict, path: str | os.PathLike = "") -> None:
    """Load a checkpoint's weights into an HF2VAD (a stage-1 checkpoint fills `model.memae`)."""
    if ckpt["module"] == "memae":
        if getattr(model, "memae", None) is None:
            raise CheckpointError(f"{path} holds an ML-MemAE-SC but the model has none")
        model.memae.load_state_dict(ckpt["model"])
    else:
        model.load_state_dict(ckpt["model"])
