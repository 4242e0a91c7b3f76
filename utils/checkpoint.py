"""Checkpoints, run-directory layout, and the config fingerprints that tie files to a config.

Run directory (`cfg.run_dir`):

    stage1/ stage2/ stage3/   last.pth, best.pth, config.yaml, tb/ (TensorBoard),
                              <ckpt>.train_stats.json beside the checkpoint eval used,
                              epoch_NNN.pth when train.keep_epochs is set
    eval/                     scores.json, metrics.json, config.yaml, roc.png,
                              curves/<video>.png, objects_highest.png, objects_lowest.png;
                              epochs.json and epochs/epoch_NNN/ with `eval.py --all-epochs`

A checkpoint is a dict of plain values and tensors (loadable with `weights_only=True`): `model`
(state dict of the trained module: the ML-MemAE-SC alone in stage 1, the whole HF2VAD after),
`optimizer`, `scheduler`, `scaler`, `epoch` (epochs completed), `step`, `epoch_loss`, `best_loss`,
`config` (the resolved config) and `fingerprints` (hashes of the model and data settings). Loading
against a config whose model or data settings differ fails and names the differing keys.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from utils.io import atomic_write

FORMAT = "hf2vad-checkpoint-1"
# The data keys a checkpoint's fingerprint covers: a list rather than "all but", so that a data
# key added later does not invalidate existing checkpoints (root and cache_dir say where things
# are, not what they are).
DATA_KEYS_HASHED = (
    "dataset",
    "train_split",
    "test_split",
    "frames_dir",
    "label_format",
    "label_path",
    "exclude_train",
    "videos",
    "max_frames",
    "synthetic",
)
# Settings added after results were published, with the value that keeps the behaviour from
# before they existed: at that value a setting is left out of every fingerprint, so the caches
# and checkpoints made before it was added stay valid.
ADDED_SETTINGS = {
    "preprocess.flow": {"units_size": None},
    "model.cvae": {"decoder_skips": [True, True]},
}
# Keys that say how fast things are made, not what they are.
PREPROCESS_KEYS_IGNORED = ("num_workers",)
MODEL_KEYS_IGNORED = ("deterministic",)  # a test-time choice, not part of the weights


class CheckpointError(RuntimeError):
    """A checkpoint or derived file that is missing, damaged or made with another config."""


def _plain(section: Any) -> Any:
    return section.to_dict() if hasattr(section, "to_dict") else section


def hashed_settings(section: Any, name: str) -> dict:
    """Config section `name` (e.g. "preprocess.flow") as a plain dict for hashing, without the
    ADDED_SETTINGS that hold their backward-compatible value."""
    plain = dict(_plain(section))
    for key, unchanged in ADDED_SETTINGS.get(name, {}).items():
        if key in plain and plain[key] == unchanged:
            del plain[key]
    return plain


def fingerprint_sections(cfg, module: str = "hf2vad") -> dict[str, dict]:
    """The config parts a checkpoint depends on.

    module: "memae" (a stage-1 checkpoint: only the ML-MemAE-SC settings matter, so a memae-type
    evaluation can reuse the hybrid run's stage 1) or "hf2vad" (the whole model section).
    """
    model = _plain(cfg["model"])
    if module == "memae":
        model = {"memae": model["memae"]}
    else:
        model = {k: v for k, v in model.items() if k not in MODEL_KEYS_IGNORED}
        model["cvae"] = hashed_settings(model["cvae"], "model.cvae")
    return {"model": model, "data": data_section(cfg)}


def data_section(cfg) -> dict:
    """The data and pre-processing settings that cubes, and what is trained on them, depend on
    (`cfg`: a config, or a dict with its "data" and "preprocess" sections)."""
    data = {k: v for k, v in _plain(cfg["data"]).items() if k in DATA_KEYS_HASHED}
    preprocess = _plain(cfg["preprocess"])
    preprocess = {k: v for k, v in preprocess.items() if k not in PREPROCESS_KEYS_IGNORED}
    cubes = {k: v for k, v in preprocess["cubes"].items() if k != "chunk_size"}
    flow = hashed_settings(preprocess["flow"], "preprocess.flow")
    return {"data": data, "preprocess": dict(preprocess, cubes=cubes, flow=flow)}


def check_data_settings(made_with: dict, cfg, what: str) -> None:
    """Raise CheckpointError naming the keys when `what` was made with other data settings
    (`made_with`: a dict with "data" and "preprocess" sections) than `cfg`."""
    details = _diff(data_section(made_with), data_section(cfg))
    if details:
        raise CheckpointError(
            f"{what} was made with other data settings than the current config: "
            + "; ".join(details[:8])
            + ". Pre-process again (python -m pre_process.run --cfg <config>), or give this "
            "config a data.cache_dir of its own."
        )


def _hash(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:16]


def fingerprints(cfg, module: str = "hf2vad") -> dict[str, str]:
    """Short hashes of the model and data settings (see `fingerprint_sections`)."""
    return {name: _hash(part) for name, part in fingerprint_sections(cfg, module).items()}


def _diff(a: Any, b: Any, prefix: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for key in sorted(set(a) | set(b)):
            out += _diff(a.get(key), b.get(key), f"{prefix}{key}.")
        return out
    return [] if a == b else [f"{prefix[:-1]}: {a!r} there, {b!r} now"]


def check_fingerprints(stored: dict, stored_config: dict, cfg, module: str, what: str) -> None:
    """Raise CheckpointError naming the differing keys when `stored` does not match `cfg`."""
    current = fingerprints(cfg, module)
    bad = [name for name in current if stored.get(name) != current[name]]
    if not bad:
        return
    old_sections = fingerprint_sections(stored_config, module)
    new_sections = fingerprint_sections(cfg, module)
    details = []
    for name in bad:
        details += _diff(old_sections[name], new_sections[name], prefix="")
    raise CheckpointError(
        f"{what} was made with other {' and '.join(bad)} settings than the current config: "
        + "; ".join(details[:8])
        + ". Use the config it was made with, or another run_dir."
    )


def stage_dir(cfg, stage: int) -> Path:
    return Path(cfg.run_dir) / f"stage{stage}"


def eval_dir(cfg) -> Path:
    return Path(cfg.run_dir) / "eval"


def save_checkpoint(path: str | os.PathLike, state: dict, cfg, module: str) -> None:
    """Write `state` (model, optimizer, ... as plain values) plus config and fingerprints;
    saved_at is the state's own when it has one (copies of one epoch share their identity)."""
    config = _plain(cfg)
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
