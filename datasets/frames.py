"""One reader for every video dataset layout the project supports.

A split folder `<root>/<dataset>/<split>/<frames_dir>/` holds either one sub-folder of numbered
images per video (`<video>/<n>.jpg|png|tif|...`, sorted by the number in the file name) or video
files (`<video>.avi|mp4|...`, decoded with OpenCV). Frames are returned as RGB uint8 [H, W, 3].
Splits and `frames_dir` are path fragments: `frames_dir: .` reads the split folder itself (Avenue's
`training_videos/*.avi`), and a split may be nested (ShanghaiTech's `training/videos`).

Rules (bad input fails with a message naming the file):
- an empty video folder, a gap in the frame numbers, two files with the same number, an unreadable
  frame, and a frame whose size differs from the video's first frame are errors;
- folders named `*_gt` are label folders (UCSD's pixel masks), not videos;
- a video shorter than `MIN_FRAMES` (5, one cube's worth) is an error. Training clips made by
  `data.exclude_train` that end up shorter than that are dropped with a warning (they are training
  data only; nothing is evaluated on them).
"""

from __future__ import annotations

import hashlib
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp")
VIDEO_EXTS = (".avi", ".mp4", ".mov", ".mkv", ".mpg", ".mpeg")
MIN_FRAMES = 5
_NUMBER = re.compile(r"(\d+)(?!.*\d)")  # the last run of digits in a name


@dataclass(frozen=True)
class Video:
    """A video or a clip of one: `num_frames` frames of `source` starting at frame `start`.

    `source` is a folder of numbered images (`frame_paths` lists them all) or a video file
    (`frame_paths` is empty). Clip frame k is source frame `start + k` (0-based).
    """

    name: str
    source: Path
    frame_paths: tuple[Path, ...]
    start: int
    num_frames: int
    frame_size: tuple[int, int]  # (H, W)

    @property
    def is_file(self) -> bool:
        return not self.frame_paths

    def frames(self) -> Iterator[np.ndarray]:
        """Yield the clip's frames in order, RGB uint8 [H, W, 3]."""
        if self.is_file:
            yield from self._file_frames()
            return
        for path in self.frame_paths[self.start : self.start + self.num_frames]:
            yield self._checked(_read_image(path), path)

    def signature(self) -> dict:
        """What identifies this clip's input data, used to decide whether caches are current: its
        extent and the bytes of the files it reads (sizes and a SHA-256), not their paths or
        times, so a dataset that is copied or moved keeps its caches."""
        files = self.frame_paths[self.start : self.start + self.num_frames] or (self.source,)
        digest = hashlib.sha256()
        total = 0
        for path in files:
            with open(path, "rb") as f:
                while chunk := f.read(1 << 20):
                    digest.update(chunk)
                    total += len(chunk)
            digest.update(b"\0")  # a file boundary
        return {
            "start": self.start,
            "num_frames": self.num_frames,
            "frame_size": list(self.frame_size),
            "bytes": total,
            "sha256": digest.hexdigest(),
        }

    def _file_frames(self) -> Iterator[np.ndarray]:
        capture = cv2.VideoCapture(str(self.source))
        try:
            for _ in range(self.start):
                capture.grab()
            for k in range(self.num_frames):
                ok, frame = capture.read()
                if not ok:
                    raise ValueError(f"cannot decode frame {self.start + k} of {self.source}")
                yield self._checked(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB), self.source)
        finally:
            capture.release()

    def _checked(self, frame: np.ndarray, path: Path) -> np.ndarray:
        if frame.shape[:2] != self.frame_size:
            raise ValueError(
                f"frame {path} has size {frame.shape[0]}x{frame.shape[1]} but the first frame "
                f"of video '{self.name}' is {self.frame_size[0]}x{self.frame_size[1]}"
            )
        return frame


# (first bytes, last bytes) of a complete file: JPEG's start and end-of-image markers, PNG's
# signature and IEND chunk.
END_MARKERS = {
    ".jpg": (b"\xff\xd8", b"\xff\xd9"),
    ".jpeg": (b"\xff\xd8", b"\xff\xd9"),
    ".png": (b"\x89PNG", b"IEND\xaeB`\x82"),
}


def check_complete(path: Path) -> None:
    """A JPEG or PNG whose end marker is missing was cut short (OpenCV would decode the missing
    part as grey without an error): an error naming the file."""
    markers = END_MARKERS.get(path.suffix.lower())
    if markers is None:
        return
    start, marker = markers
    with open(path, "rb") as f:
        if f.read(len(start)) != start:
            return  # not this format at all: the decoder says so
        f.seek(0, 2)
        size = f.tell()
        f.seek(max(0, size - 64))
        tail = f.read()
    if marker not in tail.rstrip(b"\x00"):
        raise ValueError(f"frame file is truncated (no end-of-image marker): {path}")


def _read_image(path: Path) -> np.ndarray:
    if not path.is_file():
        raise FileNotFoundError(f"frame file missing: {path}")
    check_complete(path)
    frame = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if frame is None:
        raise ValueError(f"cannot read frame (corrupt or not an image): {path}")
    return cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)


def numbered_frames(folder: Path) -> tuple[Path, ...]:
    """The images of `folder` sorted by frame number; gaps and duplicates are errors."""
    numbered = []
    for path in folder.iterdir():
        if path.suffix.lower() not in IMAGE_EXTS or path.name.startswith("."):
            continue
        match = _NUMBER.search(path.stem)
        if match is None:
            raise ValueError(f"frame file name has no frame number: {path}")
        numbered.append((int(match.group(1)), path))
    if not numbered:
        raise ValueError(f"video folder has no frames ({', '.join(IMAGE_EXTS)}): {folder}")
    numbered.sort()
    for (prev, prev_path), (cur, cur_path) in zip(numbered, numbered[1:]):
        if cur == prev:
            raise ValueError(f"two frames with number {cur}: {prev_path} and {cur_path}")
        if cur != prev + 1:
            raise FileNotFoundError(
                f"frame missing in {folder}: numbers jump from {prev} ({prev_path.name}) to "
                f"{cur} ({cur_path.name})"
            )
    return tuple(p for _, p in numbered)


def _count_file_frames(path: Path) -> tuple[int, tuple[int, int]]:
    """Frame count (by decoding, container headers lie) and size of a video file."""
    capture = cv2.VideoCapture(str(path))
    try:
        if not capture.isOpened():
            raise ValueError(f"cannot open video file: {path}")
        ok, frame = capture.read()
        if not ok:
            raise ValueError(f"video file has no decodable frames: {path}")
        count = 1
        while capture.grab():
            count += 1
    finally:
        capture.release()
    return count, frame.shape[:2]


def open_video(path: Path, name: str | None = None) -> Video:
    """A `Video` for a folder of numbered images or a video file."""
    path = Path(path)
    name = name or (path.name if path.is_dir() else path.stem)
    if path.is_dir():
        frames = numbered_frames(path)
        first = _read_image(frames[0])
        count, size = len(frames), first.shape[:2]
    elif path.suffix.lower() in VIDEO_EXTS:
        frames = ()
        count, size = _count_file_frames(path)
    else:
        raise ValueError(f"not a frame folder or a video file ({', '.join(VIDEO_EXTS)}): {path}")
    if count < MIN_FRAMES:
        raise ValueError(f"video has {count} frames, fewer than {MIN_FRAMES}: {path}")
    return Video(name, path, frames, 0, count, (int(size[0]), int(size[1])))


def split_dir(data_cfg, split: str) -> Path:
    """`<root>/<dataset>/<split>/<frames_dir>`."""
    return Path(data_cfg.root) / data_cfg.dataset / split / data_cfg.frames_dir


def list_videos(data_cfg, split: str) -> list[Video]:
    """Every video of a split, sorted by name; training videos are cut by `exclude_train`.

    `data_cfg.videos` (names) and `data_cfg.max_frames` restrict the set for quick runs.
    """
    folder = split_dir(data_cfg, split)
    if not folder.is_dir():
        raise FileNotFoundError(
            f"split folder not found: {folder} (check data.root, data.dataset, data.frames_dir)"
        )
    entries = sorted(
        p
        for p in folder.iterdir()
        if not p.name.startswith(".")
        and not p.name.endswith("_gt")  # UCSD keeps its pixel masks next to the videos
        and (p.is_dir() or p.suffix.lower() in VIDEO_EXTS)
    )
    if data_cfg.videos:
        wanted = [str(v) for v in data_cfg.videos]
        by_name = {p.name if p.is_dir() else p.stem: p for p in entries}
        missing = [v for v in wanted if v not in by_name]
        if missing:
            raise ValueError(f"data.videos names {missing} not found in {folder}")
        entries = [by_name[v] for v in wanted]
    if not entries:
        raise ValueError(f"no video folders or video files in {folder}")
    videos = [open_video(p) for p in entries]
    if split == data_cfg.train_split and data_cfg.exclude_train:
        videos = exclude_stretches(videos, data_cfg.exclude_train)
    if data_cfg.max_frames:
        videos = [_truncated(v, data_cfg.max_frames) for v in videos]
    return videos


def _truncated(video: Video, max_frames: int) -> Video:
    count = min(video.num_frames, max(max_frames, MIN_FRAMES))
    return Video(video.name, video.source, video.frame_paths, video.start, count, video.frame_size)


def _find_video(videos: list[Video], key) -> Video:
    for video in videos:
        if video.name == str(key):
            return video
    if isinstance(key, int):  # `2` in YAML for a folder named "02"
        for video in videos:
            if video.name.isdigit() and int(video.name) == key:
                return video
    raise ValueError(
        f"data.exclude_train names video {key!r}, which is not in the training split "
        f"(videos: {[v.name for v in videos]})"
    )


def exclude_stretches(videos: list[Video], stretches: list) -> list[Video]:
    """Cut `[video, first, last]` stretches (1-based, inclusive) out of the training videos.

    A video with stretches becomes clips named `<video>_a`, `<video>_b`, ... (in frame order);
    clips shorter than MIN_FRAMES are dropped with a warning.
    """
    cuts: dict[str, list[tuple[int, int]]] = {}
    for stretch in stretches:
        if not (isinstance(stretch, list) and len(stretch) == 3):
            raise ValueError(
                f"data.exclude_train entries must be [video, first, last], got {stretch!r}"
            )
        video = _find_video(videos, stretch[0])
        first, last = int(stretch[1]), int(stretch[2])
        if not 1 <= first <= last or first > video.num_frames:
            raise ValueError(
                f"data.exclude_train stretch {stretch!r}: frames must satisfy 1 <= first <= last "
                f"and first <= {video.num_frames} (frames of video '{video.name}')"
            )
        cuts.setdefault(video.name, []).append((first - 1, min(last, video.num_frames)))
    out = []
    for video in videos:
        if video.name not in cuts:
            out.append(video)
            continue
        kept, cursor = [], 0
        for begin, end in sorted(cuts[video.name]):  # 0-based [begin, end) removed
            if begin > cursor:
                kept.append((cursor, begin))
            cursor = max(cursor, end)
        if cursor < video.num_frames:
            kept.append((cursor, video.num_frames))
        for letter, (begin, end) in zip("abcdefghijklmnopqrstuvwxyz", kept):
            name = f"{video.name}_{letter}"
            if end - begin < MIN_FRAMES:
                warnings.warn(
                    f"training clip {name} (frames {begin + 1}-{end} of {video.source}) has fewer "
                    f"than {MIN_FRAMES} frames after data.exclude_train; skipped",
                    stacklevel=2,
                )
                continue
            start = video.start + begin
            out.append(
                Video(name, video.source, video.frame_paths, start, end - begin, video.frame_size)
            )
    return out


def read_video(video: Video) -> np.ndarray:
    """All frames of a (short) clip as one array [T, H, W, 3]; prefer `Video.frames()`."""
    return np.stack(list(video.frames()))
