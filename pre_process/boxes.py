"""Object boxes per frame (docs/method.md §2.1): detector boxes and foreground boxes from temporal
gradients.

Boxes are float32 [K, 4] arrays of (x1, y1, x2, y2) in continuous pixel coordinates: pixel
column c spans [c, c + 1), so an integer box is the crop `frame[y1:y2, x1:x2]`.

Foreground recipe (`merge: none`, the authors' plain recipe): Gaussian-blur frames i-1, i, i+1,
sum the absolute differences of consecutive frames, threshold at `binary_thr` (a pixel is moving
when any colour channel is above it), blank the detector boxes grown by 2 px, take the external
contours, keep bounding rectangles with area > `contour_min_area` and aspect ratio < `max_aspect`,
grow each by `grow` px. On Ped2 this breaks a walking person into many small pieces, so two
options repair it: `closing` (morphological closing of the moving mask before the contours) and
`merge` (closing, then the union of rectangles that overlap or lie within `merge_gap` px of each
other, repeated until nothing changes; the area and aspect filters apply to the merged boxes).
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Iterable, Iterator, Sequence

import cv2
import numpy as np
import torch

from pre_process.weights import load_state_dict

MERGE_MODES = ("none", "closing", "merge")
# Bumped when the box code changes its output for the same settings, so cached boxes (and the
# cubes cut from them) are recomputed. 2: end frames count their one difference twice.
RECIPE_VERSION = 2
# A box within this many pixels of an image edge is cut by it: the crop's fixed margin
# (pre_process/cubes.py) and the default of eval.border_margin (a test keeps the two equal).
BORDER_MARGIN = 1.0


def _detector_builders() -> dict:
    from torchvision.models import detection as det

    return {
        "fasterrcnn_resnet50_fpn": (
            det.fasterrcnn_resnet50_fpn,
            det.FasterRCNN_ResNet50_FPN_Weights.COCO_V1,
        ),
        "fasterrcnn_resnet50_fpn_v2": (
            det.fasterrcnn_resnet50_fpn_v2,
            det.FasterRCNN_ResNet50_FPN_V2_Weights.COCO_V1,
        ),
        "maskrcnn_resnet50_fpn": (
            det.maskrcnn_resnet50_fpn,
            det.MaskRCNN_ResNet50_FPN_Weights.COCO_V1,
        ),
    }


def border_edges(
    boxes: np.ndarray, frame_size: Sequence[int], margin: float = BORDER_MARGIN
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(left, top, right, bottom): bool per box [N, 4] (x1, y1, x2, y2), true where the box
    comes within `margin` pixels of that edge of a frame of `frame_size` (height, width)."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    height, width = frame_size
    return (
        boxes[:, 0] <= margin,
        boxes[:, 1] <= margin,
        boxes[:, 2] >= width - margin,
        boxes[:, 3] >= height - margin,
    )


def touches_border(
    boxes: np.ndarray, frame_size: Sequence[int], margin: float = BORDER_MARGIN
) -> np.ndarray:
    """True for the boxes [N, 4] that come within `margin` pixels of any edge of a frame of
    `frame_size` (height, width): objects cut by the image border."""
    left, top, right, bottom = border_edges(boxes, frame_size, margin)
    return left | top | right | bottom


def box_areas(boxes: np.ndarray) -> np.ndarray:
    """Areas as the authors count them (inclusive pixel ends: (w + 1) * (h + 1))."""
    return (boxes[:, 2] - boxes[:, 0] + 1) * (boxes[:, 3] - boxes[:, 1] + 1)


def remove_covered(boxes: np.ndarray, cover_thr: float) -> np.ndarray:
    """Drop every box covered by a larger box for more than `cover_thr` of its own area.

    Boxes are visited from the smallest; each is compared with all larger boxes (kept or not).
    """
    if len(boxes) < 2:
        return boxes
    areas = box_areas(boxes)
    order = np.argsort(areas, kind="stable")
    keep = []
    for rank, idx in enumerate(order):
        larger = boxes[order[rank + 1 :]]
        w = np.minimum(boxes[idx, 2], larger[:, 2]) - np.maximum(boxes[idx, 0], larger[:, 0]) + 1
        h = np.minimum(boxes[idx, 3], larger[:, 3]) - np.maximum(boxes[idx, 1], larger[:, 1]) + 1
        overlap = np.maximum(w, 0) * np.maximum(h, 0)
        if not np.any(overlap / areas[idx] > cover_thr):
            keep.append(idx)
    return boxes[np.sort(np.array(keep, dtype=np.int64))]


def merge_close(boxes: np.ndarray, gap: float, min_overlap: float = 0.0) -> np.ndarray:
    """Replace groups of boxes that overlap or lie within `gap` px by their bounding box.

    With `min_overlap` > 0 two boxes merge only when their intersection covers at least that
    share of the smaller one. Repeats until nothing changes (a merged box can reach new
    neighbours).
    """
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    while len(boxes) > 1:
        lo = np.maximum(boxes[:, None, :2], boxes[None, :, :2])
        hi = np.minimum(boxes[:, None, 2:], boxes[None, :, 2:])
        close = ((lo - hi) <= gap).all(axis=2)
        if min_overlap > 0:
            inter = np.prod(np.maximum(hi - lo, 0), axis=2)
            areas = np.prod(boxes[:, 2:] - boxes[:, :2], axis=1)
            smaller = np.minimum(areas[:, None], areas[None, :])
            close &= inter >= min_overlap * np.maximum(smaller, 1e-6)
        num_groups, group = _connected_components(close)
        if num_groups == len(boxes):
            break
        merged = np.zeros((num_groups, 4), dtype=np.float32)
        for g in range(num_groups):
            members = boxes[group == g]
            merged[g] = (*members[:, :2].min(0), *members[:, 2:].max(0))
        boxes = merged
    return boxes


def _connected_components(adjacency: np.ndarray) -> tuple[int, np.ndarray]:
    """Component label per node of a symmetric boolean adjacency matrix, in order of first node."""
    group = np.full(len(adjacency), -1, dtype=np.int64)
    count = 0
    for seed in range(len(adjacency)):
        if group[seed] >= 0:
            continue
        stack = [seed]
        group[seed] = count
        while stack:
            node = stack.pop()
            for other in np.flatnonzero(adjacency[node] & (group < 0)):
                group[other] = count
                stack.append(other)
        count += 1
    return count, group


class ForegroundBoxes:
    """Foreground boxes of frame i from frames (i-1, i, i+1); see the module docstring."""

    def __init__(
        self,
        binary_thr: float = 18,
        gauss_mask_size: int = 3,
        contour_min_area: float = 100,
        max_aspect: float = 10.0,
        grow: int = 2,
        merge: str = "none",
        closing_size: int = 5,
        merge_gap: float = 2,
        merge_overlap: float = 0.0,
    ):
        if merge not in MERGE_MODES:
            raise ValueError(f"preprocess.boxes.merge is {merge!r}; valid: {list(MERGE_MODES)}")
        if gauss_mask_size % 2 != 1:
            raise ValueError(f"preprocess.boxes.gauss_mask_size must be odd, got {gauss_mask_size}")
        self.binary_thr = binary_thr
        self.gauss_mask_size = gauss_mask_size
        self.contour_min_area = contour_min_area
        self.max_aspect = max_aspect
        self.grow = grow
        self.merge = merge
        self.closing_kernel = cv2.getStructuringElement(
            cv2.MORPH_ELLIPSE, (closing_size, closing_size)
        )
        self.merge_gap = merge_gap
        self.merge_overlap = merge_overlap

    def blur(self, frame: np.ndarray) -> np.ndarray:
        """The blurred uint8 frame (blur each frame once and pass it to `moving_mask`)."""
        size = (self.gauss_mask_size, self.gauss_mask_size)
        return cv2.GaussianBlur(frame, size, 0)

    def moving_mask(self, blurred: tuple) -> np.ndarray:
        """uint8 mask [H, W], 255 where the summed temporal gradient exceeds `binary_thr`.

        `blurred` = (prev, cur, next); at either end of a video the missing neighbour is None
        and the one difference present counts twice, so end frames see the same gradient
        scale as the rest (one difference alone breaks objects into many small boxes).
        """
        prev, cur, nxt = blurred
        if prev is None or nxt is None:
            diff = cv2.absdiff(cur, nxt if prev is None else prev)
            grad = cv2.add(diff, diff, dtype=cv2.CV_16U)
        else:  # |cur - prev| + |nxt - cur| exactly (uint16); OpenCV is ~10x faster than numpy
            grad = cv2.add(cv2.absdiff(cur, prev), cv2.absdiff(nxt, cur), dtype=cv2.CV_16U)
        if grad.ndim == 3:  # moving when any channel moves: the channel maximum
            grad = functools.reduce(np.maximum, [grad[..., c] for c in range(grad.shape[2])])
        mask = (grad > self.binary_thr).astype(np.uint8) * np.uint8(255)
        if self.merge != "none":
            mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, self.closing_kernel)
        return mask

    def __call__(self, blurred, blank: np.ndarray | None = None) -> np.ndarray:
        """Boxes [K, 4] of the moving regions of the middle frame, outside `blank` boxes."""
        mask = self.moving_mask(blurred)
        height, width = mask.shape
        for x1, y1, x2, y2 in blank if blank is not None else []:
            x1, y1, x2, y2 = (int(v) for v in (x1, y1, x2, y2))  # as the authors: truncate
            mask[max(0, y1 - 2) : y2 + 3, max(0, x1 - 2) : x2 + 3] = 0
        contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        rects = np.array([cv2.boundingRect(c) for c in contours], dtype=np.float32).reshape(-1, 4)
        boxes = np.concatenate([rects[:, :2], rects[:, :2] + rects[:, 2:]], axis=1)
        if self.merge == "merge":
            boxes = merge_close(boxes, self.merge_gap, self.merge_overlap)
        w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
        keep = (
            ((w + 1) * (h + 1) > self.contour_min_area)  # area as the authors count it
            & (w < self.max_aspect * h)
            & (h < self.max_aspect * w)
        )
        boxes = boxes[keep]
        boxes[:, :2] = np.maximum(boxes[:, :2] - self.grow, 0)
        boxes[:, 2] = np.minimum(boxes[:, 2] + self.grow, width)
        boxes[:, 3] = np.minimum(boxes[:, 3] + self.grow, height)
        return boxes


class DetectorBoxes:
    """A torchvision COCO detector: boxes with score > `conf_thr` and area >= `min_area`.

    Weights come from `weights_path` or torchvision's cache; nothing is downloaded.
    """

    def __init__(
        self,
        name: str,
        weights_path: str | None = None,
        conf_thr: float = 0.5,
        min_area: float = 100,
        device: str | torch.device = "cpu",
    ):
        builders = _detector_builders()
        if name not in builders:
            raise ValueError(f"preprocess.boxes.detector is {name!r}; valid: {['none', *builders]}")
        build, weights = builders[name]
        state = load_state_dict(weights, weights_path, "preprocess.boxes.detector_weights")
        self.model = build(weights=None, weights_backbone=None, num_classes=91)
        self.model.load_state_dict(state)
        self.model.eval().to(device)
        self.device = torch.device(device)
        self.conf_thr = conf_thr
        self.min_area = min_area

    @torch.inference_mode()
    def __call__(self, frame: np.ndarray) -> np.ndarray:
        """Boxes [K, 4] of an RGB uint8 frame [H, W, 3]."""
        image = torch.from_numpy(frame).to(self.device).permute(2, 0, 1).float() / 255
        out = self.model([image])[0]
        boxes = out["boxes"][out["scores"] > self.conf_thr].cpu().numpy().astype(np.float32)
        return boxes[box_areas(boxes) >= self.min_area]


class BoxExtractor:
    """Per-frame boxes: cover-filtered detector boxes (if any) plus foreground boxes."""

    def __init__(self, box_cfg, device: str | torch.device = "cpu"):
        self.whole_frame = bool(box_cfg.whole_frame)
        # areas are set for frames of reference_size (H, W); other frame sizes scale them
        self.reference_size = box_cfg.reference_size
        self.min_areas = (box_cfg.contour_min_area, box_cfg.min_area)
        self.foreground = ForegroundBoxes(
            binary_thr=box_cfg.binary_thr,
            gauss_mask_size=box_cfg.gauss_mask_size,
            contour_min_area=box_cfg.contour_min_area,
            max_aspect=box_cfg.max_aspect,
            grow=box_cfg.grow,
            merge=box_cfg.merge,
            closing_size=box_cfg.closing_size,
            merge_gap=box_cfg.merge_gap,
            merge_overlap=box_cfg.merge_overlap,
        )
        self.detector = None
        if box_cfg.detector != "none" and not self.whole_frame:
            self.detector = DetectorBoxes(
                box_cfg.detector,
                box_cfg.detector_weights,
                box_cfg.conf_thr,
                box_cfg.min_area,
                device,
            )
        self.cover_thr = box_cfg.cover_thr

    def video_boxes(self, frames: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        """Yield the boxes [K, 4] of every frame of a video (the first and last frame count their
        one temporal difference twice; see `ForegroundBoxes.moving_mask`). In whole-frame mode
        every frame has one box, the frame itself: (0, 0, width, height)."""
        if self.whole_frame:
            for frame in frames:
                height, width = frame.shape[:2]
                yield np.array([[0, 0, width, height]], dtype=np.float32)
            return
        frames = iter(frames)
        first = next(frames, None)
        if first is None:
            return
        self._scale_areas(first.shape[:2])
        for cur, blurred in _triplets(itertools.chain([first], frames), self.foreground.blur):
            detected = np.zeros((0, 4), dtype=np.float32)
            if self.detector is not None:
                detected = remove_covered(self.detector(cur), self.cover_thr)
            moving = self.foreground(blurred, blank=detected)
            yield np.concatenate([detected, moving]).astype(np.float32)

    def _scale_areas(self, frame_size: tuple[int, int]) -> None:
        """contour_min_area and min_area for this video's frame size (with reference_size)."""
        factor = 1.0
        if self.reference_size:
            factor = (
                frame_size[0] * frame_size[1] / (self.reference_size[0] * self.reference_size[1])
            )
        self.foreground.contour_min_area = self.min_areas[0] * factor
        if self.detector is not None:
            self.detector.min_area = self.min_areas[1] * factor


def _triplets(frames: Iterable[np.ndarray], blur) -> Iterator[tuple[np.ndarray, tuple]]:
    """(frame i, blurred frames (i-1, i, i+1)) for every i, with None for the neighbour missing
    at either end (a one-frame video has no motion: its frame is its own neighbour); every frame
    is blurred once."""
    stream = iter(frames)
    try:
        cur = next(stream)
    except StopIteration:
        return
    cur_b = blur(cur)
    prev_b = None
    for nxt in stream:
        nxt_b = blur(nxt)
        yield cur, (prev_b, cur_b, nxt_b)
        cur, prev_b, cur_b = nxt, cur_b, nxt_b
    yield cur, (prev_b if prev_b is not None else cur_b, cur_b, None)
