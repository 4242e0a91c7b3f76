"""Scoring a stream of frames for detect: model batches that span frames, and median smoothing
that releases each frame's score as soon as it is final."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import NamedTuple

import numpy as np
import torch

from models import ObjectErrors
from pre_process.stream import StreamFrame
from scoring.frame_scores import smooth
from scoring.statistics import object_errors


class ScoredFrame(NamedTuple):
    """A frame with the errors of its K objects."""

    index: int
    frame: np.ndarray  # RGB uint8 [H, W, 3]
    boxes: np.ndarray  # float32 [K, 4]
    s_r: np.ndarray  # float64 [K]
    s_p: np.ndarray  # float64 [K]
    s_a: np.ndarray | None = None  # float64 [K], the appearance novelty when scored
    s_kl: np.ndarray | None = None  # float64 [K], the latent divergence (zeros without a CVAE)


def cube_errors(model, frame_cubes, flow_cubes, device, batch_size: int) -> ObjectErrors:
    """(S_r, S_p, S_kl) float64 [N] of cubes in the on-disk layout (uint8 [N, 5, s, s, 3] and
    float32 [N, 4, s, s, 2]), converted as `datasets.CubeDataset` does, in batches of
    `batch_size`."""

    def batches():
        for start in range(0, len(frame_cubes), batch_size):
            frames = torch.from_numpy(frame_cubes[start : start + batch_size]).to(device)
            flows = torch.from_numpy(flow_cubes[start : start + batch_size]).to(device)
            yield (
                frames.permute(0, 1, 4, 2, 3).float().div_(255.0).contiguous(),
                flows.permute(0, 1, 4, 2, 3).contiguous(),
            )

    return object_errors(model, batches())


def score_stream(
    model,
    stream: Iterable[StreamFrame],
    device,
    batch_size: int,
    max_pending: int = 64,
    novelty: Callable[[np.ndarray], np.ndarray] | None = None,
) -> Iterator[ScoredFrame]:
    """Score the cubes of a frame stream in model batches that span frames: frames wait until
    `batch_size` cubes or `max_pending` frames are pending. Yields every frame, in order.
    `novelty`: target-frame crops uint8 [N, s, s, 3] -> S_a [N] (appearance novelty)."""
    pending: list[StreamFrame] = []
    num_cubes = 0
    for item in stream:
        pending.append(item)
        num_cubes += len(item.boxes)
        if num_cubes >= batch_size or len(pending) >= max_pending:
            yield from _score_pending(model, pending, device, batch_size, novelty)
            pending, num_cubes = [], 0
    yield from _score_pending(model, pending, device, batch_size, novelty)


def _score_pending(model, pending: list[StreamFrame], device, batch_size: int, novelty=None):
    if not pending:
        return
    frame_cubes = np.concatenate([p.frame_cubes for p in pending])
    flow_cubes = np.concatenate([p.flow_cubes for p in pending])
    s_r, s_p, s_kl = cube_errors(model, frame_cubes, flow_cubes, device, batch_size)
    bounds = np.cumsum([len(p.boxes) for p in pending])[:-1]
    s_a = None if novelty is None else np.split(novelty(frame_cubes[:, -1]), bounds)
    per_frame = zip(pending, *(np.split(s, bounds) for s in (s_r, s_p, s_kl)))
    for k, (p, r, q, d) in enumerate(per_frame):
        yield ScoredFrame(p.index, p.frame, p.boxes, r, q, None if s_a is None else s_a[k], d)


class LiveSmoother:
    """Smoothed frame scores as soon as they are final, equal to `scoring.frame_scores.smooth`
    over the whole video: a frame's smoothed value depends on the scores within `radius` frames
    (clipped at the ends of the scored stretch), so it is final `radius` frames later (or at the
    end).

    push(index, raw, payload) and finish() return [(index, smoothed, payload)] in frame order;
    frames with a NaN raw score (not scored) come out at once with NaN.
    """

    def __init__(self, mode: str, window: int, sigma: float):
        self.mode, self.window, self.sigma = mode, window, sigma
        smooth(np.zeros(1), mode, window, sigma)  # validates the settings
        # scipy.ndimage.gaussian_filter1d's kernel radius with its default truncate=4
        radii = {"median": window // 2, "medfilt": window // 2, "gaussian": int(4.0 * sigma + 0.5)}
        self.radius = radii.get(mode, 0)
        self.recent: deque[tuple[int, float]] = deque(maxlen=2 * self.radius + 1)
        self.waiting: deque[tuple[int, float, object]] = deque()

    def push(self, index: int, raw: float, payload=None) -> list[tuple[int, float, object]]:
        self.waiting.append((index, raw, payload))
        if np.isfinite(raw):
            self.recent.append((index, raw))
        return self._release(final=False)

    def finish(self) -> list[tuple[int, float, object]]:
        return self._release(final=True)

    def _release(self, final: bool) -> list[tuple[int, float, object]]:
        out = []
        while self.waiting:
            index, raw, payload = self.waiting[0]
            if not np.isfinite(raw):
                out.append((index, float("nan"), payload))
            elif final or self.recent[-1][0] >= index + self.radius:
                near = [(j, v) for j, v in self.recent if abs(j - index) <= self.radius]
                values = np.array([v for _, v in near])
                position = sum(j < index for j, _ in near)
                smoothed = smooth(values, self.mode, self.window, self.sigma)[position]
                out.append((index, float(smoothed), payload))
            else:
                break
            self.waiting.popleft()
        return out
