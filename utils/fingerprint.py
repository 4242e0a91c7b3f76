"""Config fingerprints: short hashes of the model and data settings that tie a checkpoint,
a cube cache or a scores file to the config it was made with, and the error naming the
keys that differ."""

from __future__ import annotations

import hashlib
import json
from typing import Any

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
    "preprocess.boxes": {"whole_frame": False, "reference_size": None},
    "preprocess.cubes": {"border_aspect": 0.0},
    "model.cvae": {"decoder_skips": [True, True]},
}


# Keys that say how fast things are made, not what they are.
PREPROCESS_KEYS_IGNORED = ("num_workers", "store_flows")  # how, not what: the same cubes


MODEL_KEYS_IGNORED = ("deterministic",)  # a test-time choice, not part of the weights


class CheckpointError(RuntimeError):
    """A checkpoint or derived file that is missing, damaged or made with another config."""


def plain(section: Any) -> Any:
    return section.to_dict() if hasattr(section, "to_dict") else section


def hashed_settings(section: Any, name: str) -> dict:
    """Config section `name` (e.g. "preprocess.flow") as a plain dict for hashing, without the
    ADDED_SETTINGS that hold their backward-compatible value."""
    settings = dict(plain(section))
    for key, unchanged in ADDED_SETTINGS.get(name, {}).items():
        if key in settings and settings[key] == unchanged:
            del settings[key]
    return settings


def fingerprint_sections(cfg, module: str = "hf2vad") -> dict[str, dict]:
    """The config parts a checkpoint depends on.

    module: "memae" (a stage-1 checkpoint: only the ML-MemAE-SC settings matter, so a memae-type
    evaluation can reuse the hybrid run's stage 1) or "hf2vad" (the whole model section).
    """
    model = plain(cfg["model"])
    if module == "memae":
        model = {"memae": model["memae"]}
    else:
        model = {k: v for k, v in model.items() if k not in MODEL_KEYS_IGNORED}
        model["cvae"] = hashed_settings(model["cvae"], "model.cvae")
    return {"model": model, "data": data_section(cfg)}


def data_section(cfg) -> dict:
    """The data and pre-processing settings that cubes, and what is trained on them, depend on
    (`cfg`: a config, or a dict with its "data" and "preprocess" sections)."""
    data = {k: v for k, v in plain(cfg["data"]).items() if k in DATA_KEYS_HASHED}
    preprocess = plain(cfg["preprocess"])
    preprocess = {k: v for k, v in preprocess.items() if k not in PREPROCESS_KEYS_IGNORED}
    cubes = hashed_settings(preprocess["cubes"], "preprocess.cubes")
    cubes.pop("chunk_size", None)
    flow = hashed_settings(preprocess["flow"], "preprocess.flow")
    boxes = hashed_settings(preprocess["boxes"], "preprocess.boxes")
    return {"data": data, "preprocess": dict(preprocess, boxes=boxes, cubes=cubes, flow=flow)}


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


def digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:16]


def fingerprints(cfg, module: str = "hf2vad") -> dict[str, str]:
    """Short hashes of the model and data settings (see `fingerprint_sections`)."""
    return {name: digest(part) for name, part in fingerprint_sections(cfg, module).items()}


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
