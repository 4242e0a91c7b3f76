"""Optical flow per frame, with pluggable estimators (docs/method.md §2.2).

Convention (every estimator): the flow of frame i is estimated from frame i-1 to frame i and
lives on frame i-1's pixel grid: `flow[i][y, x] = (dx, dy)` (channel 0 = x, channel 1 = y) is
the displacement in pixels of the pixel at (x, y) in frame i-1, i.e. frame_{i-1}(x, y) ~
frame_i(x + dx, y + dy) (pixels of a frame of `units_size` when that is set). Frame 0 has no
predecessor: `first_frame: zero` stores zeros, `next` stores the flow of frames 0 -> 1.

Estimators: OpenCV DIS and Farneback (grayscale, CPU) and torchvision RAFT small/large (RGB; any
device; weights from torchvision's cache or `preprocess.flow.weights`, never downloaded).
A video's flows are one `.npy` file [T, H, W, 2] of `preprocess.flow.dtype` (float16 by default:
half the disk, resolution 1/32 px at 30 px motion), written frame by frame to a memory map and
renamed into place when complete. `preprocess.flow.units_size` expresses the values in pixels of
a frame of another size, as the authors' up-scaled FlowNet2 flows were (docs/method.md §2.2).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from pre_process.weights import load_state_dict
from utils.io import atomic_write, open_npy_for_writing

FLOW_METHODS = ("dis", "farneback", "raft_small", "raft_large")
DIS_PRESETS = {
    "ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
    "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
    "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
}

FlowFn = Callable[[np.ndarray, np.ndarray], np.ndarray]


def _gray(frame: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY) if frame.ndim == 3 else frame


class DISFlow:
    """OpenCV's Dense Inverse Search flow on grayscale frames."""

    def __init__(self, preset: str = "medium"):
        if preset not in DIS_PRESETS:
            raise ValueError(
                f"preprocess.flow.dis_preset is {preset!r}; valid: {list(DIS_PRESETS)}"
            )
        self.dis = cv2.DISOpticalFlow_create(DIS_PRESETS[preset])

    def __call__(self, prev: np.ndarray, cur: np.ndarray) -> np.ndarray:
        return self.dis.calc(_gray(prev), _gray(cur), None)


class FarnebackFlow:
    """OpenCV's Farneback flow on grayscale frames (OpenCV's commonly used settings)."""

    def __call__(self, prev: np.ndarray, cur: np.ndarray) -> np.ndarray:
        return cv2.calcOpticalFlowFarneback(
            _gray(prev),
            _gray(cur),
            None,
            pyr_scale=0.5,
            levels=3,
            winsize=15,
            iterations=3,
            poly_n=5,
            poly_sigma=1.2,
            flags=0,
        )


class RAFTFlow:
    """torchvision RAFT (small or large) on RGB frames, padded (replicated border) to sides that
    are multiples of 8 and at least 128 pixels."""

    def __init__(
        self,
        size: str = "small",
        weights_path: str | None = None,
        num_iters: int = 12,
        device: str | torch.device = "cpu",
    ):
        from torchvision.models import optical_flow as of

        build, weights = {
            "small": (of.raft_small, of.Raft_Small_Weights.C_T_V2),
            "large": (of.raft_large, of.Raft_Large_Weights.C_T_V2),
        }[size]
        state = load_state_dict(weights, weights_path, "preprocess.flow.weights")
        self.model = build(weights=None)
        self.model.load_state_dict(state)
        self.device = torch.device(device)
        self.model.eval().to(self.device)
        self.num_iters = num_iters

    def _tensor(self, frame: np.ndarray) -> torch.Tensor:
        image = torch.from_numpy(np.ascontiguousarray(frame)).to(self.device)
        return image.permute(2, 0, 1)[None].float() / 127.5 - 1.0  # RAFT expects [-1, 1]

    @torch.inference_mode()
    def __call__(self, prev: np.ndarray, cur: np.ndarray) -> np.ndarray:
        height, width = prev.shape[:2]
        # RAFT needs sides that are multiples of 8 and at least 128 (its correlation pyramid)
        pad = (0, max(128, width + -width % 8) - width, 0, max(128, height + -height % 8) - height)
        pair = [F.pad(self._tensor(f), pad, mode="replicate") for f in (prev, cur)]
        flow = self.model(*pair, num_flow_updates=self.num_iters)[-1]
        return flow[0, :, :height, :width].permute(1, 2, 0).cpu().numpy()


class FlowInUnits:
    """An estimator whose flow values are expressed in pixels of a frame resized to
    units_size (height, width): x scaled by width / frame width, y by height / frame height."""

    def __init__(self, estimate: FlowFn, units_size: tuple[int, int]):
        self.estimate, self.units_size = estimate, units_size

    def __call__(self, prev: np.ndarray, cur: np.ndarray) -> np.ndarray:
        flow = self.estimate(prev, cur)
        (units_h, units_w), (height, width) = self.units_size, prev.shape[:2]
        return flow * np.array([units_w / width, units_h / height], dtype=flow.dtype)


def check_units_size(units_size) -> tuple[int, int] | None:
    """`preprocess.flow.units_size` as (height, width), or None; anything else is an error."""
    if units_size is None:
        return None
    if (
        not isinstance(units_size, (list, tuple))
        or len(units_size) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in units_size)
    ):
        raise ValueError(
            f"preprocess.flow.units_size is {units_size!r}; expected null or [height, width] "
            "(two positive integers)"
        )
    return tuple(units_size)


def _estimator(flow_cfg, device: str | torch.device) -> FlowFn:
    method = flow_cfg.method
    if method == "dis":
        return DISFlow(flow_cfg.dis_preset)
    if method == "farneback":
        return FarnebackFlow()
    if method in ("raft_small", "raft_large"):
        return RAFTFlow(method.split("_")[1], flow_cfg.weights, flow_cfg.raft_iters, device)
    raise ValueError(f"preprocess.flow.method is {method!r}; valid: {list(FLOW_METHODS)}")


def build_flow_estimator(flow_cfg, device: str | torch.device = "cpu") -> FlowFn:
    """The estimator named by `preprocess.flow.method`, in the units of
    `preprocess.flow.units_size`."""
    units_size = check_units_size(flow_cfg.units_size)
    estimate = _estimator(flow_cfg, device)
    return estimate if units_size is None else FlowInUnits(estimate, units_size)


def write_video_flows(
    frames: Iterable[np.ndarray],
    num_frames: int,
    estimate: FlowFn,
    path: str | Path,
    first_frame: str = "next",
    dtype: str = "float16",
    progress: Callable[[int], None] | None = None,
) -> None:
    """Estimate the flow of every frame and write [T, H, W, 2] to `path` (atomically)."""
    if first_frame not in ("zero", "next"):
        raise ValueError(f"preprocess.flow.first_frame is {first_frame!r}; valid: zero, next")
    if dtype not in ("float16", "float32"):
        raise ValueError(f"preprocess.flow.dtype is {dtype!r}; valid: float16, float32")

    def write(tmp: str) -> None:
        stream = iter(frames)
        prev = next(stream)
        out = open_npy_for_writing(tmp, dtype, (num_frames, *prev.shape[:2], 2))
        count = 1
        for i, cur in enumerate(stream, start=1):
            if i >= num_frames:
                raise ValueError(f"more than {num_frames} frames given for {path}")
            out[i] = estimate(prev, cur)
            prev, count = cur, count + 1
            if progress is not None:
                progress(1)
        if count != num_frames:
            raise ValueError(f"{count} frames given for {path}, expected {num_frames}")
        out[0] = out[1] if first_frame == "next" and num_frames > 1 else 0
        out.flush()
        del out

    atomic_write(path, write)


def load_flows(path: str | Path, num_frames: int, frame_size: tuple[int, int]) -> np.ndarray:
    """A video's flows [T, H, W, 2] memory-mapped; a file that does not match its video is an
    error naming it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"flow file missing: {path}")
    try:
        flows = np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError as err:  # e.g. "mmap length is greater than file size"
        raise ValueError(f"flow file {path} is truncated or damaged ({err}); delete it") from None
    expected = (num_frames, *frame_size, 2)
    if flows.shape != expected:
        raise ValueError(
            f"flow file {path} has shape {flows.shape} but its video has {num_frames} frames of "
            f"{frame_size[0]}x{frame_size[1]}: expected {expected}. Delete it to recompute."
        )
    return flows
