"""Streaming pre-processing: boxes -> flow -> cubes of one video, frame by frame, bounded memory.

The offline pipeline (pre_process.run) writes every video's boxes and flows to disk before cutting
cubes. Here the same steps run as one pass over the frames and keep only what the next cube needs:

- the boxes of frame i need frames i-1, i, i+1 (docs/method.md §2.1), so the stream lags one frame
  behind the reader, and the last frame counts its one difference twice (as
  `BoxExtractor.video_boxes`);
- the flow of frame j (frame j-1 -> j) is estimated as frame j is read and rounded to the storage
  dtype of the offline cache (`preprocess.flow.dtype`), so both pipelines crop identical numbers;
  the flow of frame 0 follows `preprocess.flow.first_frame` (zero, or the flow of frames 0 -> 1);
- the cubes of frame i crop frames i-4 ... i and flows i-3 ... i (indices below 0 clamped to 0)
  exactly as `pre_process.cubes.video_cubes` does.
Held at any time: the last num_frames + 1 frames (6) and the last num_frames flows (5).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from typing import NamedTuple

import numpy as np

from pre_process.boxes import BoxExtractor
from pre_process.cubes import ImageRing, cut_cubes
from pre_process.flow import FlowFn

FLOW_DTYPES = ("float16", "float32")


class StreamFrame(NamedTuple):
    """One frame of the stream with the cubes of its K objects."""

    index: int  # 0-based frame index in the video
    frame: np.ndarray  # RGB uint8 [H, W, 3]
    boxes: np.ndarray  # float32 [K, 4], (x1, y1, x2, y2) pixels
    frame_cubes: np.ndarray  # uint8 [K, 5, s, s, 3], frames i-4 ... i
    flow_cubes: np.ndarray  # float32 [K, 4, s, s, 2], flows i-3 ... i (pixels)
    flow: np.ndarray  # flow of frame i (frame i-1 -> i), [H, W, 2] in the flow dtype


class _Ring:
    """The last `size` items of a stream, looked up by their stream index."""

    def __init__(self, size: int):
        self.items: deque[tuple[int, object]] = deque(maxlen=size)

    def append(self, index: int, item) -> None:
        self.items.append((index, item))

    def __getitem__(self, index: int):
        for stored, item in self.items:
            if stored == index:
                return item
        raise KeyError(f"stream item {index} is no longer held (have {self.indices()})")

    def indices(self) -> list[int]:
        return [i for i, _ in self.items]


def stream_cubes(
    frames: Iterable[np.ndarray],
    box_extractor: BoxExtractor,
    estimate_flow: FlowFn,
    first_frame: str = "next",
    flow_dtype: str = "float16",
    size: int = 32,
    num_frames: int = 5,
    border_aspect: float = 0.0,
) -> Iterator[StreamFrame]:
    """Yield a `StreamFrame` for every frame of `frames` (RGB uint8 [H, W, 3]), in order,
    including frames without objects (K = 0). See the module docstring for the timing."""
    if first_frame not in ("zero", "next"):
        raise ValueError(f"preprocess.flow.first_frame is {first_frame!r}; valid: zero, next")
    if flow_dtype not in FLOW_DTYPES:
        raise ValueError(f"preprocess.flow.dtype is {flow_dtype!r}; valid: {list(FLOW_DTYPES)}")
    tap = _FrameTap(frames, estimate_flow, first_frame, flow_dtype, num_frames)
    for i, boxes in enumerate(box_extractor.video_boxes(tap)):
        boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
        frame_cubes, flow_cubes = _cut_cubes(i, boxes, tap, size, num_frames, border_aspect)
        yield StreamFrame(i, tap.raw[i], boxes, frame_cubes, flow_cubes, tap.flow(i))


class _FrameTap:
    """The frames, passed on to the box extractor; on the way, each frame and its flow are kept:
    frames i-4 ... i+1 and flows i-3 ... i+1 as float32 ring buffers (for cropping), the last two
    frames as read, the flows i-3 ... i+1 in the flow dtype, and the flow of frame 0."""

    def __init__(self, frames, estimate_flow, first_frame, flow_dtype, num_frames):
        self.frames, self.estimate_flow = frames, estimate_flow
        self.first_frame, self.flow_dtype = first_frame, flow_dtype
        self.num_frames = num_frames
        self.images = ImageRing(num_frames + 1)
        self.flow_images = ImageRing(num_frames)
        self.raw = _Ring(2)
        self.flows = _Ring(num_frames)
        self.flow_0: np.ndarray | None = None

    def __iter__(self) -> Iterator[np.ndarray]:
        prev = None
        for j, frame in enumerate(self.frames):
            self.images.put(j, frame)
            self.raw.append(j, frame)
            if prev is None:
                self.flow_0 = np.zeros((*frame.shape[:2], 2), dtype=self.flow_dtype)
                self.flow_images.put(0, self.flow_0)
            else:
                # the offline cache stores flows in flow_dtype; round the same way
                flow = self.estimate_flow(prev, frame).astype(self.flow_dtype)
                self.flows.append(j, flow)
                self.flow_images.put(j, flow)
                if j == 1 and self.first_frame == "next":
                    self.flow_0 = flow
                    self.flow_images.put(0, flow)
            prev = frame
            yield frame

    def flow(self, j: int) -> np.ndarray:
        return self.flow_0 if j == 0 else self.flows[j]


def _cut_cubes(
    i: int, boxes: np.ndarray, tap: _FrameTap, size: int, num_frames: int, border_aspect: float
) -> tuple[np.ndarray, np.ndarray]:
    """Frame cubes uint8 [K, T, s, s, 3] and flow cubes float32 [K, T-1, s, s, 2] of frame i,
    with the same operations as `pre_process.cubes.video_cubes`."""
    if len(boxes) == 0:
        return (
            np.zeros((0, num_frames, size, size, 3), np.uint8),
            np.zeros((0, num_frames - 1, size, size, 2), np.float32),
        )
    return cut_cubes(i, boxes, tap.images, tap.flow_images, size, num_frames, border_aspect)
