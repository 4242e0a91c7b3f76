"""Frame-level ground truth in the formats users have; 1 = abnormal frame.

`data.label_format`, with `data.label_path` relative to `<root>/<dataset>`:
- `none`: no labels.
- `npy_masks`: a folder with one `<video>.npy` per video (uint8/bool, one entry per frame), as
  ShanghaiTech's `test_frame_mask`. A video without a file has no labels (None).
- `mat_intervals`: a MATLAB `.mat` file with a variable `gt`: a cell array with one entry per
  video (videos in sorted order), each a 2xK matrix of 1-based inclusive [start; end] columns
  (ped2.mat, avenue.mat). An empty entry means a normal video.
- `pixel_masks`: a folder with one `<video>_gt/` folder of per-frame images per video (UCSD
  `TestXXX_gt/*.bmp`); a frame is abnormal when any pixel is set. Missing folder = no labels.

Nothing is ever unpickled: `.npy` files are read with allow_pickle=False and `.mat` files with
scipy.io.loadmat (which does not execute code).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import scipy.io

from datasets.frames import numbered_frames

LABEL_FORMATS = ("none", "npy_masks", "mat_intervals", "pixel_masks")


@dataclass(frozen=True)
class LabelSource:
    """Where a dataset's frame labels are and in which format; `truncate`: labels are cut to
    the frames the videos were cut to (data.max_frames set)."""

    path: Path
    format: str
    truncate: bool = False

    def __post_init__(self) -> None:
        if self.format not in LABEL_FORMATS:
            raise ValueError(
                f"data.label_format is {self.format!r}; valid choices: {list(LABEL_FORMATS)}"
            )

    @classmethod
    def from_config(cls, cfg) -> LabelSource:
        path = Path(cfg.data.root) / cfg.data.dataset / cfg.data.label_path
        return cls(path, cfg.data.label_format, bool(cfg.data.max_frames))

    def load(self, videos: list[str], num_frames: list[int]) -> dict[str, np.ndarray | None]:
        """Frame labels per video: uint8 [num_frames] (1 = abnormal), or None when unknown."""
        if len(videos) != len(num_frames):
            raise ValueError(f"{len(videos)} video names but {len(num_frames)} frame counts")
        if self.format == "none":
            return {name: None for name in videos}
        loaders = {"npy_masks": _npy_masks, "mat_intervals": _mat_intervals, "pixel_masks": _pixel}
        raw = loaders[self.format](self.path, videos, num_frames)
        out = {}
        for name, count in zip(videos, num_frames):
            labels, origin = raw[name]
            if labels is not None:
                labels = _fit_length(labels, count, origin, truncate=self.truncate)
            out[name] = labels
        return out


def _fit_length(labels: np.ndarray, count: int, origin: str, truncate: bool) -> np.ndarray:
    if truncate and len(labels) >= count:
        labels = labels[:count]
    if len(labels) != count:
        raise ValueError(f"labels in {origin} cover {len(labels)} frames but the video has {count}")
    return labels


def _npy_masks(folder: Path, videos, num_frames) -> dict:
    if not folder.is_dir():
        raise FileNotFoundError(f"label folder not found (data.label_path): {folder}")
    out = {}
    for name in videos:
        path = folder / f"{name}.npy"
        if not path.is_file():
            out[name] = (None, str(path))
            continue
        try:
            mask = np.load(path, allow_pickle=False)
        except ValueError as err:
            raise ValueError(f"cannot read label file {path}: {err}") from None
        mask = np.asarray(mask).squeeze()
        if mask.ndim != 1 or not np.isin(mask, (0, 1)).all():
            raise ValueError(
                f"label file {path} must hold one 0/1 value per frame, got shape {mask.shape} "
                f"with values {np.unique(mask)[:5]}"
            )
        out[name] = (mask.astype(np.uint8), str(path))
    return out


def _cell_entries(gt: np.ndarray) -> list:
    """The per-video entries of `gt`, loaded from a MATLAB cell array (object array)."""
    if gt.dtype == object:
        return list(gt.ravel())
    return [gt]  # a single numeric matrix: one video


def _intervals(entry, path: Path, video: str) -> np.ndarray:
    """A [K, 2] array of 1-based inclusive (start, end) pairs from one cell entry."""
    entry = np.asarray(entry, dtype=np.float64)
    if entry.size == 0:
        return np.zeros((0, 2), dtype=np.int64)
    if entry.ndim == 1 or 1 in entry.shape:
        entry = entry.reshape(-1)
        if entry.size != 2:
            raise ValueError(f"{path}: gt entry of video '{video}' is not [start; end] pairs")
        return entry.reshape(1, 2).astype(np.int64)
    if entry.shape[0] != 2:
        raise ValueError(
            f"{path}: gt entry of video '{video}' has shape {entry.shape}; expected 2xK "
            f"([start; end] per column)"
        )
    return entry.T.astype(np.int64)


def _mat_intervals(path: Path, videos, num_frames) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"label file not found (data.label_path): {path}")
    try:
        contents = scipy.io.loadmat(str(path))
    except Exception as err:  # scipy raises several types for a bad file
        raise ValueError(f"cannot read MATLAB label file {path}: {err}") from None
    if "gt" not in contents:
        names = [k for k in contents if not k.startswith("__")]
        raise ValueError(f"label file {path} has no variable 'gt' (variables: {names})")
    entries = _cell_entries(contents["gt"])
    if len(entries) != len(videos):
        raise ValueError(
            f"label file {path} has {len(entries)} gt entries but there are {len(videos)} videos"
        )
    out = {}
    for name, count, entry in zip(videos, num_frames, entries):
        labels = np.zeros(count, dtype=np.uint8)
        for start, end in _intervals(entry, path, name):
            if not 1 <= start <= end <= count:
                raise ValueError(
                    f"{path}: interval [{start}, {end}] of video '{name}' is outside its "
                    f"{count} frames (1-based, inclusive)"
                )
            labels[start - 1 : end] = 1
        out[name] = (labels, str(path))
    return out


def _pixel(folder: Path, videos, num_frames) -> dict:
    if not folder.is_dir():
        raise FileNotFoundError(f"label folder not found (data.label_path): {folder}")
    out = {}
    for name in videos:
        gt_dir = folder / f"{name}_gt"
        if not gt_dir.is_dir():
            out[name] = (None, str(gt_dir))
            continue
        labels = []
        for path in numbered_frames(gt_dir):
            mask = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
            if mask is None:
                raise ValueError(f"cannot read label mask {path}")
            labels.append(int(mask.any()))
        out[name] = (np.array(labels, dtype=np.uint8), str(gt_dir))
    return out
