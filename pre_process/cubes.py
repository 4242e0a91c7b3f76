"""Spatio-temporal cubes (STCs, docs/method.md §2.3) written in chunks to memory-mappable `.npy`
files.

For every box of frame i (the target), the same box is cropped from frames i-4 ... i and from the
flows of frames i-3 ... i (flow j = frame j-1 -> j), each crop resized to 32x32 bilinearly. Frame
indices before 0 are replaced by 0 (the first frame), so every frame gets its cubes. With a
`border_aspect` > 0, the crop of an object cut by the image border is completed beyond the border
to a whole object's proportions (`complete_border_boxes`); the part outside the image is zero
(black frames, no motion), so a partly visible object keeps its scale instead of being stretched.

Layout of `<cache_dir>/cubes/<split>/` (N cubes):
- `frames.npy`    uint8   [N, 5, 32, 32, 3]  RGB crops of frames i-4 ... i
- `flows.npy`     float32 [N, 4, 32, 32, 2]  flow crops of frames i-3 ... i, (dx, dy) in pixels of
                                             the original frame, or of `preprocess.flow.units_size`
                                             when set (crops are resized, values not)
- `boxes.npy`     float32 [N, 4]             (x1, y1, x2, y2) in the original frame, as detected
                                             (not completed beyond the border)
- `video_idx.npy` int32   [N]                index into manifest["videos"]
- `frame_idx.npy` int32   [N]                0-based index of frame i in its video (or clip)
- `manifest.json` videos, num_frames, count, frame_size, split, sources, config, fingerprint
Cubes are ordered by video, then frame, then box. The folder is built under a temporary name and
renamed when complete, so a present `manifest.json` means a complete set.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
from torchvision.ops import roi_align

from pre_process.boxes import BORDER_MARGIN, border_edges
from utils.io import atomic_folder, open_npy_for_writing, write_json

CUBE_ARRAYS = ("frames", "flows", "boxes", "video_idx", "frame_idx")


def complete_border_boxes(
    boxes: np.ndarray, frame_size: Sequence[int], aspect: float, margin: float = BORDER_MARGIN
) -> np.ndarray:
    """Crop boxes [N, 4] (x1, y1, x2, y2) for objects cut by the image border of a frame of
    `frame_size` (height, width): a box at the left or right edge (not both) narrower than
    `aspect` x its height is widened beyond that edge to that width; a box at the top or bottom
    edge (not both) lower than its width / `aspect` is heightened beyond it (a box is at most
    one of the two). `aspect` <= 0 returns the boxes unchanged.
    """
    out = np.array(boxes, dtype=np.float32).reshape(-1, 4)
    if aspect <= 0 or len(out) == 0:
        return out
    x1, y1, x2, y2 = (out[:, k].copy() for k in range(4))
    want_w, want_h = aspect * (y2 - y1), (x2 - x1) / aspect
    left, top, right, bottom = border_edges(out, frame_size, margin)
    grow_w, grow_h = want_w > x2 - x1, want_h > y2 - y1
    out[:, 0] = np.where(left & ~right & grow_w, x2 - want_w, x1)
    out[:, 2] = np.where(right & ~left & grow_w, x1 + want_w, x2)
    out[:, 1] = np.where(top & ~bottom & grow_h, y2 - want_h, y1)
    out[:, 3] = np.where(bottom & ~top & grow_h, y1 + want_h, y2)
    return out


def crop_resize(
    images: torch.Tensor, boxes: torch.Tensor, size: int = 32, order: Sequence[int] | None = None
) -> torch.Tensor:
    """Crop every box from every image and resize bilinearly: [T, C, H, W] -> [K, T', C, s, s].

    Box (x1, y1, x2, y2) covers pixels x1 ... x2 - 1 (pixel c spans [c, c + 1)). Output pixel j
    samples the input at x = x1 + (j + 0.5) * (x2 - x1) / s - 0.5 (pixel centres at integers),
    the same mapping as `cv2.resize(image[y1:y2, x1:x2], (s, s))` with bilinear interpolation.
    `order` lists the images to crop, in output order (default: all T in order), so that a
    window can be cropped from a ring buffer without stacking its images first.
    """
    order = list(range(images.shape[0])) if order is None else list(order)
    num_boxes = boxes.shape[0]
    if num_boxes == 0:
        return images.new_zeros((0, len(order), images.shape[1], size, size))
    batch = torch.tensor(order, dtype=images.dtype).repeat_interleave(num_boxes)
    rois = torch.cat([batch[:, None], boxes.to(images.dtype).repeat(len(order), 1)], dim=1)
    crops = roi_align(images, rois, output_size=size, sampling_ratio=1, aligned=True)
    return crops.view(len(order), num_boxes, *crops.shape[1:]).transpose(0, 1)


class ImageRing:
    """The latest `size` images [H, W, C] of a stream as one float32 tensor [size, C, H, W]
    (image j in slot j % size), converted once on arrival; `slots` maps image indices to slots
    for `crop_resize(ring.data, boxes, order=...)`."""

    def __init__(self, size: int):
        self.size = size
        self.data: torch.Tensor | None = None
        self.latest = -1

    def put(self, j: int, image: np.ndarray) -> None:
        """Store image j (any j within `size` of the latest one; a later j evicts the oldest)."""
        if j <= self.latest - self.size:
            raise KeyError(f"image {j} is older than the ring holds (latest {self.latest})")
        image = np.asarray(image)
        if not image.flags.writeable:  # a read-only memory map; torch wants writable memory
            image = image.copy()
        source = torch.from_numpy(image).permute(2, 0, 1)
        if self.data is None:
            self.data = torch.empty((self.size, *source.shape), dtype=torch.float32)
        self.data[j % self.size].copy_(source)
        self.latest = max(self.latest, j)

    def slots(self, indices: Iterable[int]) -> list[int]:
        indices = list(indices)
        for j in indices:
            if not self.latest - self.size < j <= self.latest:
                raise KeyError(f"image {j} is not held (latest {self.latest}, size {self.size})")
        return [j % self.size for j in indices]


def video_cubes(
    frames: Iterable[np.ndarray],
    flows: np.ndarray,
    boxes: list[np.ndarray],
    size: int = 32,
    num_frames: int = 5,
    border_aspect: float = 0.0,
) -> Iterable[tuple[int, np.ndarray, np.ndarray, np.ndarray]]:
    """Yield (i, frame cubes uint8 [K, 5, s, s, 3], flow cubes float32 [K, 4, s, s, 2], boxes)
    for every frame i of a video that has boxes.

    `frames` streams RGB uint8 [H, W, 3]; `flows` is [T, H, W, 2] (memory-mapped is fine).
    Each frame and each flow is converted to float32 once, into a ring buffer.
    """
    frame_ring, flow_ring = ImageRing(num_frames), ImageRing(num_frames - 1)
    for i, frame in enumerate(frames):
        frame_ring.put(i, frame)
        flow_ring.put(i, flows[i])
        if len(boxes[i]) == 0:
            continue
        box_array = np.asarray(boxes[i], dtype=np.float32)
        cubes = cut_cubes(i, box_array, frame_ring, flow_ring, size, num_frames, border_aspect)
        yield i, *cubes, boxes[i]


def cut_cubes(
    i: int,
    boxes: np.ndarray,
    frame_ring: ImageRing,
    flow_ring: ImageRing,
    size: int = 32,
    num_frames: int = 5,
    border_aspect: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Cubes of frame i: crops of frames i-T+1 ... i (uint8 [K, T, s, s, 3]) and of flows
    i-T+2 ... i (float32 [K, T-1, s, s, 2]), T = num_frames, indices below 0 replaced by 0;
    boxes cut by the image border completed beyond it by `border_aspect` (see module doc)."""
    num_flows = num_frames - 1
    frame_size = tuple(frame_ring.data.shape[-2:])
    box_tensor = torch.from_numpy(complete_border_boxes(boxes, frame_size, border_aspect))
    frame_ids = [max(j, 0) for j in range(i - num_frames + 1, i + 1)]
    frame_crops = crop_resize(frame_ring.data, box_tensor, size, frame_ring.slots(frame_ids))
    flow_ids = [max(j, 0) for j in range(i - num_flows + 1, i + 1)]
    flow_crops = crop_resize(flow_ring.data, box_tensor, size, flow_ring.slots(flow_ids))
    frame_cubes = frame_crops.round_().clamp_(0, 255).to(torch.uint8).permute(0, 1, 3, 4, 2)
    flow_cubes = flow_crops.permute(0, 1, 3, 4, 2)
    return frame_cubes.numpy(), flow_cubes.contiguous().numpy()


class CubeWriter:
    """Appends cubes to preallocated `.npy` memory maps, `chunk_size` cubes at a time."""

    def __init__(self, folder: Path, count: int, size: int, num_frames: int, chunk_size: int):
        self.folder = folder
        shapes = {
            "frames": ((count, num_frames, size, size, 3), np.uint8),
            "flows": ((count, num_frames - 1, size, size, 2), np.float32),
            "boxes": ((count, 4), np.float32),
            "video_idx": ((count,), np.int32),
            "frame_idx": ((count,), np.int32),
        }
        self.arrays = {
            name: open_npy_for_writing(folder / f"{name}.npy", dtype, shape)
            for name, (shape, dtype) in shapes.items()
        }
        self.count, self.chunk_size, self.written = count, chunk_size, 0
        self.buffer: dict[str, list] = {name: [] for name in CUBE_ARRAYS}
        self.buffered = 0

    def add(self, video_idx: int, frame_idx: int, frames, flows, boxes) -> None:
        num = len(boxes)
        self.buffer["frames"].append(frames)
        self.buffer["flows"].append(flows)
        self.buffer["boxes"].append(np.asarray(boxes, dtype=np.float32).reshape(num, 4))
        self.buffer["video_idx"].append(np.full(num, video_idx, dtype=np.int32))
        self.buffer["frame_idx"].append(np.full(num, frame_idx, dtype=np.int32))
        self.buffered += num
        if self.buffered >= self.chunk_size:
            self.flush()

    def add_block(self, video_idx: int, frame_idx, frames, flows, boxes) -> None:
        """Cubes of one video with a frame index each (a part joined into a split)."""
        num = len(boxes)
        self.buffer["frames"].append(np.asarray(frames))
        self.buffer["flows"].append(np.asarray(flows))
        self.buffer["boxes"].append(np.asarray(boxes, dtype=np.float32).reshape(num, 4))
        self.buffer["video_idx"].append(np.full(num, video_idx, dtype=np.int32))
        self.buffer["frame_idx"].append(np.asarray(frame_idx, dtype=np.int32))
        self.buffered += num
        if self.buffered >= self.chunk_size:
            self.flush()

    def flush(self) -> None:
        if not self.buffered:
            return
        end = self.written + self.buffered
        if end > self.count:
            raise RuntimeError(f"more cubes than the {self.count} counted for {self.folder}")
        for name, parts in self.buffer.items():
            self.arrays[name][self.written : end] = np.concatenate(parts)
            parts.clear()
        self.written, self.buffered = end, 0

    def close(self) -> None:
        self.flush()
        if self.written != self.count:
            raise RuntimeError(f"{self.written} cubes written, {self.count} counted: {self.folder}")
        for array in self.arrays.values():
            array.flush()
        self.arrays.clear()


def write_split_cubes(
    out_dir: Path,
    videos: list,
    boxes: list[list[np.ndarray]],
    load_flows: Callable[[int], np.ndarray],
    manifest: dict,
    size: int = 32,
    num_frames: int = 5,
    chunk_size: int = 2048,
    progress: Callable[[int], None] | None = None,
    border_aspect: float = 0.0,
) -> int:
    """Build the cube folder of one split; returns the number of cubes.

    `videos` are `datasets.frames.Video`s, `boxes[v][i]` the boxes of frame i of video v, and
    `load_flows(v)` returns video v's flows [T, H, W, 2]. `manifest` gets `count` added.
    """
    count = sum(len(b) for video_boxes in boxes for b in video_boxes)
    threads = torch.get_num_threads()
    # The crops are tiny: one thread avoids thread start-up and contention costs (20x here).
    torch.set_num_threads(1)
    try:
        with atomic_folder(out_dir) as tmp:
            writer = CubeWriter(tmp, count, size, num_frames, chunk_size)
            for v, video in enumerate(videos):
                frames, flows = video.frames(), load_flows(v)
                cubes = video_cubes(frames, flows, boxes[v], size, num_frames, border_aspect)
                for i, frame_cubes, flow_cubes, frame_boxes in cubes:
                    writer.add(v, i, frame_cubes, flow_cubes, frame_boxes)
                if progress is not None:
                    progress(video.num_frames)
            writer.close()
            write_json(tmp / "manifest.json", {**manifest, "count": count})
    finally:
        torch.set_num_threads(threads)
    return count
