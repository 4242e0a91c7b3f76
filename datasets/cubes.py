"""Memory-mapped access to the spatio-temporal cubes written by `pre_process` (layout in
`pre_process/cubes.py`). Loading executes no code: `.npy` with allow_pickle=False and JSON."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from utils.fingerprint import check_data_settings, plain
from utils.io import read_json

CUBE_ARRAYS = ("frames", "flows", "boxes", "video_idx", "frame_idx")


def cube_folder(cache_dir: str | Path, split: str) -> Path:
    """`<cache_dir>/cubes/<split>`."""
    return Path(cache_dir) / "cubes" / split


@dataclass(frozen=True)
class CubeSource:
    """Where a config's cubes are and what they must have been made with: the cache folder, the
    split names, the data and pre-processing settings (`settings`: the config's "data" and
    "preprocess" sections, checked against each cube manifest) and the validation split of whole
    training videos."""

    cache_dir: Path
    train_split: str
    test_split: str
    settings: dict
    val_videos: tuple[str, ...] = ()
    val_max_cubes: int = 0

    @classmethod
    def from_config(cls, cfg) -> CubeSource:
        return cls(
            cache_dir=Path(cfg.data.cache_dir),
            train_split=cfg.data.train_split,
            test_split=cfg.data.test_split,
            settings={"data": plain(cfg.data), "preprocess": plain(cfg.preprocess)},
            val_videos=tuple(cfg.train.val_videos),
            val_max_cubes=int(cfg.train.val_max_cubes),
        )

    def folder(self, split: str) -> Path:
        """The cube folder of `split`."""
        return cube_folder(self.cache_dir, split)

    def has(self, split: str) -> bool:
        """Whether the cubes of `split` are cached."""
        return (self.folder(split) / "manifest.json").is_file()

    def open(
        self,
        split: str,
        max_cubes: int = 0,
        include: Sequence[str] | None = None,
        exclude: Sequence[str] = (),
    ) -> CubeDataset:
        """The cubes of `split` (see CubeDataset); cubes whose manifest says they were made with
        other data or pre-processing settings are an error naming the keys."""
        dataset = CubeDataset(self.folder(split), max_cubes, include, exclude)
        made_with = dataset.manifest.get("config")
        if made_with:  # hand-made cubes (tests) carry no config
            check_data_settings(made_with, self.settings, f"cube folder {dataset.cube_dir}")
        return dataset

    def train_val(self, max_cubes: int = 0) -> tuple[CubeDataset, CubeDataset | None]:
        """Training cubes without the validation videos, and the validation cubes of those whole
        videos (at most `val_max_cubes`, evenly spaced; None without a validation split).
        `max_cubes` subsamples the training part."""
        train = self.open(self.train_split, max_cubes, exclude=self.val_videos)
        if not self.val_videos:
            return train, None
        val = self.open(self.train_split, self.val_max_cubes, include=self.val_videos)
        return train, val


class CubeDataset(Dataset):
    """The cubes of one split.

    Item i: {"frames": float32 [5, 3, 32, 32] in [0, 1] (frames i-4 ... i of the target's video,
    RGB), "flows": float32 [4, 2, 32, 32] (pixels of the frame, or of `preprocess.flow.units_size`;
    channel 0 = dx), "index": i}. `boxes` [N, 4],
    `video_idx` [N] and `frame_idx` [N] are aligned with the items: row i describes item i.
    `include` (video names; None = all) and `exclude` keep the cubes of some videos only (e.g.
    a validation split of whole training videos); then, with `max_cubes` > 0, an evenly spaced
    subset of that many of them is used (deterministic).
    """

    def __init__(
        self,
        cube_dir: str | Path,
        max_cubes: int = 0,
        include: Sequence[str] | None = None,
        exclude: Sequence[str] = (),
    ):
        self.cube_dir = Path(cube_dir)
        manifest_path = self.cube_dir / "manifest.json"
        if not manifest_path.is_file():
            raise FileNotFoundError(
                f"cube folder {self.cube_dir} is missing or incomplete (no manifest.json); "
                f"run: python -m pre_process.run --cfg <your config>"
            )
        self.manifest = read_json(manifest_path)
        self.videos: list[str] = list(self.manifest["videos"])
        self.num_frames: list[int] = list(self.manifest["num_frames"])
        total = int(self.manifest["count"])
        arrays = {name: self._open(name, total) for name in CUBE_ARRAYS}
        self.rows = self._video_rows(np.asarray(arrays["video_idx"]), include, exclude)
        if 0 < max_cubes < len(self.rows):
            picks = np.linspace(0, len(self.rows) - 1, max_cubes).round().astype(np.int64)
            self.rows = self.rows[np.unique(picks)]
        self.boxes = np.asarray(arrays["boxes"][self.rows])
        self.video_idx = np.asarray(arrays["video_idx"][self.rows])
        self.frame_idx = np.asarray(arrays["frame_idx"][self.rows])
        self._frames = arrays["frames"]
        self._flows = arrays["flows"]

    def _video_rows(
        self, video_idx: np.ndarray, include: Sequence[str] | None, exclude: Sequence[str]
    ) -> np.ndarray:
        """Rows of the cubes whose video is in `include` (None = all) and not in `exclude`."""
        unknown = sorted((set(include or ()) | set(exclude)) - set(self.videos))
        if unknown:
            raise ValueError(
                f"videos {unknown} are not in cube folder {self.cube_dir} "
                f"(it holds {self.videos[:3]}...)"
            )
        keep = [
            v
            for v, name in enumerate(self.videos)
            if (include is None or name in include) and name not in exclude
        ]
        return np.flatnonzero(np.isin(video_idx, keep))

    def _open(self, name: str, total: int) -> np.ndarray:
        path = self.cube_dir / f"{name}.npy"
        if not path.is_file():
            raise FileNotFoundError(f"cube file missing: {path} (re-run pre-processing)")
        try:
            array = np.load(path, mmap_mode="r", allow_pickle=False)
        except ValueError as err:  # e.g. "mmap length is greater than file size"
            raise ValueError(
                f"cube file {path} is truncated or damaged ({err}); re-run pre-processing"
            ) from None
        if array.shape[:1] != (total,):
            raise ValueError(
                f"cube file {path} has {array.shape[0]} rows but manifest.json says {total}"
            )
        return array

    def __len__(self) -> int:
        return len(self.rows)

    def target_frames(self) -> np.ndarray:
        """The target frame (the last of each cube) of every cube, uint8 [N, H, W, 3] RGB."""
        return np.asarray(self._frames[self.rows, -1])

    def __getitem__(self, index: int) -> dict:
        row = self.rows[index]
        frames = torch.from_numpy(np.array(self._frames[row]))  # [5, 32, 32, 3] uint8
        flows = torch.from_numpy(np.array(self._flows[row], dtype=np.float32))
        return {
            "frames": frames.permute(0, 3, 1, 2).float().div_(255.0),
            "flows": flows.permute(0, 3, 1, 2).contiguous(),
            "index": int(index),
        }


class WithFlowRecon(Dataset):
    """Items of `dataset` with "flow_recon" added: row i of `recon` [N, F, 2, H, W] (the frozen
    ML-MemAE-SC's reconstructions of item i's flows, computed once instead of every epoch)."""

    def __init__(self, dataset: Dataset, recon: torch.Tensor):
        if len(recon) != len(dataset):
            raise ValueError(f"{len(recon)} reconstructions for {len(dataset)} cubes")
        self.dataset, self.recon = dataset, recon

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict:
        return dict(self.dataset[index], flow_recon=self.recon[index])
