"""Tiny hand-made cubes in the on-disk contract layout, for fast training and eval tests."""

from pathlib import Path

import numpy as np

from utils.io import write_json

# the smallest model every test trains or scores quickly
TINY_MODEL = [
    "model.memae.feature_root=4",
    "model.memae.num_slots=16",
    "model.cvae.nf_start=8",
    "model.cvae.nf_max=8",
]


TINY = [
    "model.memae.feature_root=4",
    "model.memae.num_slots=16",
    "model.cvae.nf_start=8",
    "model.cvae.nf_max=8",
    "stage1.batch_size=16",
    "stage2.batch_size=16",
    "stage3.batch_size=16",
    "stage1.num_epochs=2",
    "stage2.num_epochs=2",
    "stage3.num_epochs=1",
    "stage1.lr=0.001",
    "stage2.lr=0.001",
    "stage3.lr=0.001",
    "train.log_every=2",
    "train.image_every=3",
    "eval.batch_size=32",
    "eval.window=3",
    "eval.num_grid_objects=3",
    "data.label_format=npy_masks",
    "data.label_path=labels",
]


def write_cubes(folder: Path, videos: dict[str, int], objects: list[tuple], seed: int) -> None:
    """Cubes in the on-disk contract layout. objects: (video, frame, speed, brightness)."""
    rng = np.random.default_rng(seed)
    n = len(objects)
    frames = np.zeros((n, 5, 32, 32, 3), np.uint8)
    flows = np.zeros((n, 4, 32, 32, 2), np.float32)
    names = list(videos)
    for i, (_, _, speed, brightness) in enumerate(objects):
        for t in range(5):
            x = int(4 + speed * t) % 24
            frames[i, t, 8:24, x : x + 8] = brightness
        flows[i, ..., 0] = speed + rng.normal(0, 0.1, (4, 32, 32))
    frames += rng.integers(0, 10, frames.shape, dtype=np.uint8)
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / "frames.npy", frames)
    np.save(folder / "flows.npy", flows)
    boxes = np.tile(np.array([[10, 20, 42, 52]], np.float32), (n, 1))
    np.save(folder / "boxes.npy", boxes)
    np.save(folder / "video_idx.npy", np.array([names.index(o[0]) for o in objects], np.int32))
    np.save(folder / "frame_idx.npy", np.array([o[1] for o in objects], np.int32))
    write_json(
        folder / "manifest.json",
        {
            "videos": names,
            "num_frames": list(videos.values()),
            "count": n,
            "frame_size": [64, 96],
            "split": folder.name,
            "config": {},
        },
    )


def tiny_overrides(tmp_path: Path) -> list[str]:
    """Write tiny train/test cubes and labels under tmp_path; return config overrides for them.

    Normal objects move slowly, abnormal ones fast. Test videos: "a" and "b" labelled (frames 2
    and 3 without objects), "c" without labels or objects (scored, left out of AUROC).
    """
    cache = tmp_path / "cache"
    train = [("t1", f, 1.0, 200) for f in range(24)] + [("t2", f, 1.0, 180) for f in range(24)]
    write_cubes(cache / "cubes" / "training", {"t1": 24, "t2": 24}, train, seed=0)
    test = []
    labels = {"a": np.zeros(20, np.uint8), "b": np.zeros(20, np.uint8)}
    for name in ("a", "b"):
        for f in range(20):
            if f in (2, 3):
                continue
            abnormal = name == "a" and 10 <= f < 16 or name == "b" and f >= 14
            labels[name][f] = abnormal
            test.append((name, f, 4.0 if abnormal else 1.0, 190))
            test.append((name, f, 1.0, 200))  # a normal object in every frame as well
    write_cubes(cache / "cubes" / "testing", {"a": 20, "b": 20, "c": 8}, test, seed=1)
    root = tmp_path / "data"
    (root / "ped2" / "labels").mkdir(parents=True)
    for name, lab in labels.items():
        np.save(root / "ped2" / "labels" / f"{name}.npy", lab)
    paths = [f"data.cache_dir={cache}", f"data.root={root}", f"run_dir={tmp_path / 'run'}"]
    return TINY + paths
