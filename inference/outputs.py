"""What `detect.py` writes per input: annotated video, score tables, curve, intermediate files.

Files that grow while a video streams (the annotated MP4, objects.csv, intermediate arrays) are
written under temporary names and renamed into place when the video is done, so an interrupted run
leaves no half file under a final name.
"""

from __future__ import annotations

import contextlib
import csv
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import cv2
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from utils.io import (  # noqa: E402
    atomic_write,
    atomic_write_text,
    open_npy_for_writing,
    remove_stale_temporaries,
    write_json,
)

FONT = cv2.FONT_HERSHEY_SIMPLEX


@contextlib.contextmanager
def streamed_file(path: Path, suffix: str = "") -> Iterator[Path]:
    """A temporary path beside `path` (ending in `suffix`, which OpenCV needs to pick a
    container), renamed onto `path` when the block ends without error, removed otherwise."""
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path, suffix)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=f".tmp{suffix}")
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it private; outputs are ordinary files
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def score_colour(score: float, scale: float) -> tuple[int, int, int]:
    """BGR colour from green (score <= 0, the training mean) via yellow to red (score >= scale)."""
    t = float(np.clip(score / scale, 0.0, 1.0)) if np.isfinite(score) else 0.0
    red, green = min(1.0, 2.0 * t), min(1.0, 2.0 * (1.0 - t))
    return 0, int(round(220 * green)), int(round(255 * red))


class VideoAnnotator:
    """Writes the input frames to an MP4 (OpenCV, mp4v) with every object's box coloured by its
    anomaly score, the score next to the box, and a banner with the frame score.

    `path` must end in .mp4 (OpenCV picks the container from it); use with `streamed_file`.
    """

    def __init__(self, path: Path, fps: float, frame_size: tuple[int, int], colour_scale: float):
        self.fps, self.colour_scale = fps, colour_scale
        self.height, self.width = frame_size
        fourcc = cv2.VideoWriter_fourcc(*"mp4v")
        self.writer = cv2.VideoWriter(str(path), fourcc, fps, (self.width, self.height))
        if not self.writer.isOpened():
            raise RuntimeError(f"OpenCV cannot write an MP4 (mp4v) video to {path}")

    def __enter__(self) -> VideoAnnotator:
        return self

    def __exit__(self, *exc) -> None:
        self.writer.release()

    def write(
        self,
        frame: np.ndarray,
        index: int,
        boxes: np.ndarray,
        object_scores: np.ndarray,
        raw: float,
        smoothed: float,
        threshold: float | None,
    ) -> None:
        """Annotate one RGB uint8 frame [H, W, 3] and append it."""
        image = cv2.cvtColor(frame, cv2.COLOR_RGB2BGR)
        scale = max(1, round(min(self.height, self.width) / 240))  # lines and text grow with size
        placed: list[tuple[int, int, int, int]] = []  # label rectangles drawn so far
        order = np.argsort(-np.asarray(object_scores, dtype=np.float64))  # highest first
        for k in order:
            x1, y1, x2, y2 = (int(round(v)) for v in boxes[k])
            colour = score_colour(object_scores[k], self.colour_scale)
            cv2.rectangle(image, (x1, y1), (x2 - 1, y2 - 1), colour, scale)
            self._label(image, f"{object_scores[k]:.1f}", (x1, y1, x2, y2), colour, scale, placed)
        self._banner(image, index, raw, smoothed, threshold, scale)
        self.writer.write(image)

    def _label(self, image, text, box, colour, scale, placed) -> None:
        """The score above its box, else below it; left out where it would overlap another
        label (the higher scores are drawn first, so they keep theirs)."""
        (w, h), _ = cv2.getTextSize(text, FONT, 0.3 * scale, 1)
        x1, y1, _, y2 = box
        x = int(np.clip(x1, 0, max(image.shape[1] - w, 0)))
        for y in (y1 - 2, y2 + h + 2):
            rect = (x, y - h, x + w, y)
            inside = rect[1] >= 0 and rect[3] <= image.shape[0]
            free = all(
                rect[2] < r[0] or r[2] < rect[0] or rect[3] < r[1] or r[3] < rect[1] for r in placed
            )
            if inside and free:
                cv2.putText(image, text, (x, y), FONT, 0.3 * scale, colour)
                placed.append(rect)
                return

    def _banner(self, image, index, raw, smoothed, threshold, scale) -> None:
        """Frame number, time and scores on a black band; on two lines, in a smaller font if
        needed, when the frame is too narrow for one."""
        head = f"#{index} {index / self.fps:.1f}s"
        if np.isfinite(raw):
            tail = f"score {raw:.2f} smoothed {smoothed:.2f}"
        else:
            tail = "not scored (first frames)"
        anomalous = threshold is not None and np.isfinite(smoothed) and smoothed > threshold
        width = image.shape[1] - 4
        font = 0.35 * scale
        lines = [f"{head} {tail}"]
        if cv2.getTextSize(lines[0], FONT, font, 1)[0][0] > width:
            lines = [head, tail]
            while (
                font > 0.25 and max(cv2.getTextSize(t, FONT, font, 1)[0][0] for t in lines) > width
            ):
                font *= 0.9
        step = int(round(font / 0.35 * 12))
        cv2.rectangle(image, (0, 0), (image.shape[1], step * len(lines) + 3), (0, 0, 0), -1)
        for i, text in enumerate(lines):
            cv2.putText(image, text, (2, step * (i + 1) - 2), FONT, font, (255, 255, 255))
        if anomalous:
            cv2.rectangle(image, (0, 0), (image.shape[1] - 1, image.shape[0] - 1), (0, 0, 255), 2)
            size = cv2.getTextSize("ANOMALY", FONT, 0.45 * scale, 1)[0]
            origin = (image.shape[1] - size[0] - 3, 24 * scale)
            cv2.putText(image, "ANOMALY", origin, FONT, 0.45 * scale, (0, 0, 255), 1 + scale // 2)


class ObjectsCsv:
    """objects.csv, one row per object as it is scored: frame, box, S_r, S_p, (S_a,) (S_kl,)
    fused score; S_a with `appearance`, S_kl with `divergence` (a model with a frame
    predictor)."""

    HEADER = ("frame", "x1", "y1", "x2", "y2", "s_r", "s_p", "score")

    def __init__(self, path: Path, appearance: bool = False, divergence: bool = False):
        self.handle = open(path, "w", newline="")
        self.writer = csv.writer(self.handle)
        self.optional = ("s_a",) * appearance + ("s_kl",) * divergence
        self.writer.writerow(self.HEADER[:-1] + self.optional + ("score",))

    def __enter__(self) -> ObjectsCsv:
        return self

    def __exit__(self, *exc) -> None:
        self.handle.close()

    def write(self, item, scores) -> None:
        """The objects of a scored frame (`inference.stream_scoring.ScoredFrame`) and their
        fused `scores`."""
        columns = [item.s_r, item.s_p] + [getattr(item, key) for key in self.optional]
        for box, *errors, s in zip(item.boxes, *columns, scores):
            self.writer.writerow(
                [item.index, *(f"{v:.2f}" for v in box), *(f"{e:.6g}" for e in errors), f"{s:.6g}"]
            )


def _number(value: float) -> str:
    return f"{value:.6g}" if np.isfinite(value) else ""


def write_frame_csv(path: Path, fps: float, raw, smoothed, num_objects, anomalous=None) -> None:
    """scores.csv: frame, time_s, raw_score, smoothed_score, num_objects[, anomalous]; frames
    that are not scored (the first eval.drop_first) have empty score cells."""
    header = ["frame", "time_s", "raw_score", "smoothed_score", "num_objects"]
    header += ["anomalous"] if anomalous is not None else []
    lines = [",".join(header)]
    for i, (r, s, n) in enumerate(zip(raw, smoothed, num_objects)):
        row = [str(i), f"{i / fps:.3f}", _number(r), _number(s), str(int(n))]
        row += [str(int(anomalous[i]))] if anomalous is not None else []
        lines.append(",".join(row))
    atomic_write_text(path, "\n".join(lines) + "\n")


def plot_score_curve(
    path: Path, name: str, fps: float, raw, smoothed, threshold=None, intervals=()
) -> None:
    """curve.png: raw and smoothed frame scores over time, threshold and detected intervals."""
    fig, ax = plt.subplots(figsize=(8, 2.8))
    seconds = np.arange(len(raw)) / fps
    for k, interval in enumerate(intervals):
        label = "detected anomalous" if k == 0 else None  # one legend entry
        ax.axvspan(
            interval["start_s"],
            interval["end_s"],
            color="tab:orange",
            alpha=0.25,
            lw=0,
            label=label,
        )
    ax.plot(seconds, raw, color="tab:blue", alpha=0.35, linewidth=0.8, label="frame score")
    ax.plot(seconds, smoothed, color="tab:blue", linewidth=1.6, label="smoothed")
    if threshold is not None:
        ax.axhline(threshold, color="tab:red", linestyle="--", linewidth=1, label="threshold")
    ax.set(
        title=f"{name}: {len(intervals)} anomalous interval(s)" if threshold is not None else name,
        xlabel=f"time (s) at {fps:g} frames/s",
        ylabel="anomaly score",
        xlim=(0, max(seconds[-1], 1e-3) if len(seconds) else 1),
    )
    ax.legend(loc="upper left", fontsize=7)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    plt.close(fig)


class NpyAppender:
    """A `.npy` file of unknown length built row block by row block in bounded memory: the rows
    go to a raw temporary file; `close` writes the header and copies them after it."""

    def __init__(self, path: Path, dtype, row_shape: tuple[int, ...]):
        self.path, self.dtype, self.row_shape = path, np.dtype(dtype), tuple(row_shape)
        self.raw_path = path.with_name(f".{path.name}.rows")
        self.handle = open(self.raw_path, "wb")
        self.count = 0

    def append(self, rows: np.ndarray) -> None:
        rows = np.ascontiguousarray(rows, dtype=self.dtype)
        if rows.shape[1:] != self.row_shape:
            raise ValueError(f"{self.path}: rows of shape {rows.shape[1:]}, not {self.row_shape}")
        self.handle.write(rows.tobytes())
        self.count += len(rows)

    def close(self) -> None:
        self.handle.close()
        header = {
            "descr": np.lib.format.dtype_to_descr(self.dtype),
            "fortran_order": False,
            "shape": (self.count, *self.row_shape),
        }
        with open(self.path, "wb") as out, open(self.raw_path, "rb") as rows:
            np.lib.format.write_array_header_1_0(out, header)
            shutil.copyfileobj(rows, out)
        self.raw_path.unlink()


class IntermediateWriter:
    """`--save-intermediate`: the flows [T, H, W, 2] and the cubes of one video in the layout of
    `pre_process/cubes.py` (readable with `datasets.CubeDataset`), in `<folder>/`."""

    def __init__(
        self,
        folder: Path,
        name: str,
        num_frames: int,
        frame_size,
        cube_size: int,
        cube_frames: int,
        flow_dtype: str,
        config: dict,
    ):
        self.folder = folder
        folder.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(folder)
        self.tmp = Path(
            tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.", suffix=".tmp")
        )
        self.tmp.chmod(0o755)
        (self.tmp / "cubes").mkdir()
        self.flows = open_npy_for_writing(
            self.tmp / "flows.npy", flow_dtype, (num_frames, *frame_size, 2)
        )
        cubes = self.tmp / "cubes"
        self.arrays = {
            "frames": NpyAppender(
                cubes / "frames.npy", np.uint8, (cube_frames, cube_size, cube_size, 3)
            ),
            "flows": NpyAppender(
                cubes / "flows.npy", np.float32, (cube_frames - 1, cube_size, cube_size, 2)
            ),
            "boxes": NpyAppender(cubes / "boxes.npy", np.float32, (4,)),
            "video_idx": NpyAppender(cubes / "video_idx.npy", np.int32, ()),
            "frame_idx": NpyAppender(cubes / "frame_idx.npy", np.int32, ()),
        }
        self.manifest = {
            "videos": [name],
            "num_frames": [num_frames],
            "frame_size": list(frame_size),
            "split": "detect",
            "config": config,
        }

    def add(self, item) -> None:
        """Store one `pre_process.stream.StreamFrame`."""
        self.flows[item.index] = item.flow
        num = len(item.boxes)
        self.arrays["frames"].append(item.frame_cubes)
        self.arrays["flows"].append(item.flow_cubes)
        self.arrays["boxes"].append(item.boxes)
        self.arrays["video_idx"].append(np.zeros(num, np.int32))
        self.arrays["frame_idx"].append(np.full(num, item.index, np.int32))

    def close(self) -> None:
        self.flows.flush()
        del self.flows
        for array in self.arrays.values():
            array.close()
        count = self.arrays["boxes"].count
        write_json(self.tmp / "cubes" / "manifest.json", {**self.manifest, "count": count})
        if self.folder.exists():
            shutil.rmtree(self.folder)
        os.replace(self.tmp, self.folder)

    def abort(self) -> None:
        for array in self.arrays.values():
            array.handle.close()
        shutil.rmtree(self.tmp, ignore_errors=True)
