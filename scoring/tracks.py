"""Object scores smoothed along object tracks, before the maximum over a frame's objects (ours,
docs/method.md §6.2).

The paper takes each frame's maximum object score, then median-filters the frame scores. In a
frame of ten walkers, one walker's brief error spike (an occlusion, a box cut in two) then becomes
the frame's score; an anomaly, by contrast, stays unusual for as long as it is in view. So each
object's score is first replaced by the median of its own scores over `window` frames along its
track (centred, clipped where the track begins or ends).

Tracks link each object to the object of the previous frame that overlaps it most (greedy,
one-to-one, highest intersection over union first, at least `min_iou`); an object without such a
predecessor starts a track. Linking looks only backwards, so a stream can build the same tracks
as it goes (`LiveTracks`), `window // 2` frames behind the newest frame.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over union of every box of `a` [N, 4] with every box of `b` [M, 4] (x1, y1,
    x2, y2): [N, M]."""
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    width = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
    height = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
    inter = np.clip(width, 0, None) * np.clip(height, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def link_to_previous(previous: np.ndarray, current: np.ndarray, min_iou: float) -> np.ndarray:
    """For each box of `current`, the index of the box of `previous` it continues, or -1."""
    links = np.full(len(current), -1, dtype=np.int64)
    if len(previous) == 0 or len(current) == 0:
        return links
    iou = box_iou(previous, current)
    taken = np.zeros(len(previous), dtype=bool)
    for flat in np.argsort(-iou, axis=None, kind="stable"):
        i, j = np.unravel_index(flat, iou.shape)
        if iou[i, j] < min_iou:
            break
        if not taken[i] and links[j] < 0:
            taken[i], links[j] = True, i
    return links


def link_tracks(
    video_idx: np.ndarray, frame_idx: np.ndarray, boxes: np.ndarray, min_iou: float
) -> np.ndarray:
    """A track id for every object [N] (objects in any order; ids unique over all videos)."""
    video_idx, frame_idx = np.asarray(video_idx), np.asarray(frame_idx)
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    track = np.full(len(frame_idx), -1, dtype=np.int64)
    order = np.lexsort((frame_idx, video_idx))
    changes = (np.diff(video_idx[order]) != 0) | (np.diff(frame_idx[order]) != 0)
    starts = np.flatnonzero(np.r_[True, changes])
    next_id, previous, previous_key = 0, np.zeros(0, np.int64), None
    for members in np.split(order, starts[1:]):
        if len(members) == 0:
            continue
        v, f = video_idx[members[0]], frame_idx[members[0]]
        if previous_key != (v, f - 1):
            previous = np.zeros(0, np.int64)
        links = link_to_previous(boxes[previous], boxes[members], min_iou)
        for j, i in enumerate(links):
            if i >= 0:
                track[members[j]] = track[previous[i]]
            else:
                track[members[j]], next_id = next_id, next_id + 1
        previous, previous_key = members, (v, f)
    return track


def track_medians(
    scores: np.ndarray, track: np.ndarray, frame_idx: np.ndarray, window: int
) -> np.ndarray:
    """Each object's score replaced by the median of its track's scores within window // 2
    frames of it. A track holds one object per frame over consecutive frames."""
    scores = np.asarray(scores, np.float64)
    out = scores.copy()
    radius = window // 2
    if radius == 0:
        return out
    order = np.lexsort((frame_idx, track))
    bounds = np.flatnonzero(np.diff(track[order])) + 1
    for members in np.split(order, bounds):
        values = scores[members]
        for k, obj in enumerate(members):
            out[obj] = np.median(values[max(0, k - radius) : k + radius + 1])
    return out


@dataclass(frozen=True)
class TrackSmoothing:
    """Median of `window` frames (odd; 1: off) along tracks linked at `min_iou`."""

    window: int = 1
    min_iou: float = 0.3

    def __post_init__(self):
        if self.window < 1 or self.window % 2 == 0:
            raise ValueError(
                f"config key 'eval.track_window' must be a positive odd number, got {self.window}"
            )
        if not 0.0 < self.min_iou <= 1.0:
            raise ValueError(f"config key 'eval.track_iou' must be in (0, 1], got {self.min_iou}")

    @property
    def enabled(self) -> bool:
        return self.window > 1

    def apply(
        self,
        scores: np.ndarray,
        video_idx: np.ndarray,
        frame_idx: np.ndarray,
        boxes: np.ndarray | None,
    ) -> np.ndarray:
        """The object scores smoothed along their tracks (a float64 copy when off)."""
        if not self.enabled:
            return np.asarray(scores, np.float64).copy()
        if boxes is None:
            raise ValueError("eval.track_window > 1 needs the objects' boxes to link tracks")
        track = link_tracks(video_idx, frame_idx, boxes, self.min_iou)
        return track_medians(scores, track, np.asarray(frame_idx), self.window)


class LiveTracks:
    """TrackSmoothing over a stream of frames: push(index, boxes, scores, payload) and finish()
    return [(index, smoothed scores, payload)] in frame order, each once no later frame can
    change it (window // 2 frames later, or at the end); equal to TrackSmoothing.apply over the
    whole video. Frames must come in order, one push per frame."""

    def __init__(self, smoothing: TrackSmoothing):
        self.smoothing = smoothing
        self.radius = smoothing.window // 2
        self.frames: deque[tuple[int, np.ndarray, np.ndarray, object]] = deque()  # not released
        self.history: dict[int, dict[int, float]] = {}  # track -> frame -> score, recent frames
        self.previous = (None, np.zeros((0, 4)), np.zeros(0, np.int64))  # index, boxes, tracks
        self.next_id = 0

    def push(
        self, index: int, boxes: np.ndarray, scores: np.ndarray, payload=None
    ) -> list[tuple[int, np.ndarray, object]]:
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        scores = np.asarray(scores, np.float64)
        last_index, last_boxes, last_tracks = self.previous
        if last_index != index - 1:
            last_boxes, last_tracks = np.zeros((0, 4)), np.zeros(0, np.int64)
        links = link_to_previous(last_boxes, boxes, self.smoothing.min_iou)
        tracks = np.empty(len(boxes), dtype=np.int64)
        for j, i in enumerate(links):
            if i >= 0:
                tracks[j] = last_tracks[i]
            else:
                tracks[j], self.next_id = self.next_id, self.next_id + 1
            self.history.setdefault(int(tracks[j]), {})[index] = float(scores[j])
        self.previous = (index, boxes, tracks)
        self.frames.append((index, tracks, scores, payload))
        return self._release(newest=index)

    def finish(self) -> list[tuple[int, np.ndarray, object]]:
        return self._release(newest=None)

    def _release(self, newest: int | None) -> list[tuple[int, np.ndarray, object]]:
        out = []
        while self.frames and (newest is None or self.frames[0][0] + self.radius <= newest):
            index, tracks, scores, payload = self.frames.popleft()
            smoothed = scores.copy()
            for j, t in enumerate(tracks):
                seen = self.history[int(t)]
                near = [
                    seen[f]
                    for f in range(index - self.radius, index + self.radius + 1)
                    if f in seen
                ]
                smoothed[j] = np.median(near)
            out.append((index, smoothed, payload))
            self._forget(index - self.radius)
        return out

    def _forget(self, before: int) -> None:
        """Drop the scores no frame still waiting can need."""
        for t in list(self.history):
            seen = self.history[t]
            for f in [f for f in seen if f < before]:
                del seen[f]
            if not seen:
                del self.history[t]
