"""Pre-processing: crop geometry, flow convention, boxes, cube alignment, caching, real data."""

import copy
import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from data_paths import PED2

from datasets import CubeDataset, CubeSource
from datasets.frames import list_videos
from datasets.labels import LabelSource
from pre_process.boxes import BoxExtractor, ForegroundBoxes, merge_close, remove_covered
from pre_process.cubes import (
    ImageRing,
    complete_border_boxes,
    crop_resize,
    cut_cubes,
    write_split_cubes,
)
from pre_process.flow import (
    DISFlow,
    FarnebackFlow,
    RAFTFlow,
    build_flow_estimator,
    load_flows,
    write_video_flows,
)
from pre_process.run import run_preprocess
from utils.config import load_config, replaced
from utils.fingerprint import CheckpointError, fingerprints

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Small tensors: one thread is much faster than several on a shared CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ---------------------------------------------------------------------------------------------
# Crop geometry


def test_crop_resize_hand_computed_on_a_ramp():
    ys, xs = np.mgrid[0:20, 0:30].astype(np.float32)
    image = torch.from_numpy(xs + 100 * ys)[None, None]  # [1, 1, 20, 30], f(x, y) = x + 100 y
    crops = crop_resize(image, torch.tensor([[4.0, 2.0, 12.0, 10.0]]), size=4)
    assert crops.shape == (1, 1, 1, 4, 4)
    # output pixel j samples x = x1 + (j + 0.5) * w / s - 0.5 = 4.5, 6.5, 8.5, 10.5
    x = np.array([4.5, 6.5, 8.5, 10.5])
    y = np.array([2.5, 4.5, 6.5, 8.5])
    np.testing.assert_allclose(crops[0, 0, 0].numpy(), x[None, :] + 100 * y[:, None], atol=1e-3)
    # up-scaling: box (4, 2, 8, 6) to 8x8 samples x = 3.75, 4.25, ..., 7.25
    crops = crop_resize(image, torch.tensor([[4.0, 2.0, 8.0, 6.0]]), size=8)
    x = 3.75 + 0.5 * np.arange(8)
    y = 1.75 + 0.5 * np.arange(8)
    np.testing.assert_allclose(crops[0, 0, 0].numpy(), x[None, :] + 100 * y[:, None], atol=1e-3)


def test_crop_resize_matches_cv2_resize_of_the_crop():
    rng = np.random.default_rng(0)
    image = rng.uniform(0, 255, (40, 50, 3)).astype(np.float32)
    tensor = torch.from_numpy(image).permute(2, 0, 1)[None]
    x1, y1, x2, y2 = 6, 3, 38, 35  # 32x32 -> 16x16: exact 2x down-scaling
    ours = crop_resize(tensor, torch.tensor([[x1, y1, x2, y2]], dtype=torch.float32), 16)
    ref = cv2.resize(image[y1:y2, x1:x2], (16, 16), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_allclose(ours[0, 0].permute(1, 2, 0).numpy(), ref, atol=1e-3)
    x1, y1, x2, y2 = 10, 5, 18, 13  # 8x8 -> 32x32: cv2 clamps at the crop border, we read on
    ours = crop_resize(tensor, torch.tensor([[x1, y1, x2, y2]], dtype=torch.float32), 32)
    ref = cv2.resize(image[y1:y2, x1:x2], (32, 32), interpolation=cv2.INTER_LINEAR)
    inner = slice(2, 30)  # away from the outer half pixel
    np.testing.assert_allclose(
        ours[0, 0].permute(1, 2, 0).numpy()[inner, inner], ref[inner, inner], atol=1e-3
    )


def test_complete_border_boxes_by_hand():
    frame = (100, 200)  # height, width
    boxes = np.array(
        [
            [0, 40, 10, 80],  # left edge, 10 wide, 40 high: widened leftwards to 20
            [190, 40, 200, 80],  # right edge: widened rightwards to 20
            [50, 40, 60, 80],  # interior: unchanged
            [0, 40, 30, 80],  # left edge but already wider than 0.5 x height: unchanged
            [60, 90, 100, 100],  # bottom edge, 40 wide, 10 high: heightened downwards to 80
            [0, 40, 200, 80],  # left and right edges: cannot tell which side is cut
            [0, 90, 2, 100],  # bottom-left corner, too narrow: widened leftwards
        ],
        np.float32,
    )
    out = complete_border_boxes(boxes, frame, aspect=0.5)
    expected = [
        [-10, 40, 10, 80],
        [190, 40, 210, 80],
        [50, 40, 60, 80],
        [0, 40, 30, 80],
        [60, 90, 100, 170],
        [0, 40, 200, 80],
        [-3, 90, 2, 100],
    ]
    np.testing.assert_allclose(out, expected)
    np.testing.assert_array_equal(complete_border_boxes(boxes, frame, aspect=0.0), boxes)
    assert complete_border_boxes(np.zeros((0, 4)), frame, 0.5).shape == (0, 4)


def test_border_completion_keeps_a_cut_object_at_its_scale():
    """A 20x40 bright object whose left half is outside the image: completed, its crop is the
    crop of the whole object with the outside half black (same scale), where the stretched
    visible half fills the crop; flows outside the image are zero."""
    height, width = 60, 80
    frame = np.zeros((height, width, 3), np.uint8)
    frame[10:50, 0:10] = 200  # the visible right half of an object 20 wide
    flow = np.zeros((height, width, 2), np.float32)
    flow[10:50, 0:10] = (1.5, -0.5)
    frames, flows = ImageRing(5), ImageRing(4)
    for j in range(5):
        frames.put(j, frame)
        flows.put(j, flow)
    box = np.array([[0, 10, 10, 50]], np.float32)
    stretched, _ = cut_cubes(4, box, frames, flows, size=8, num_frames=5)
    assert stretched[0, -1, 1:-1, 1:-1].min() == 200  # the half fills the crop
    completed, flow_cube = cut_cubes(4, box, frames, flows, 8, 5, border_aspect=0.5)
    crop = completed[0, -1, :, :, 0]
    assert (crop[:, :3] == 0).all() and (crop[1:-1, 5:] == 200).all()  # outside black, inside
    assert (flow_cube[0, -1, :, :3] == 0).all()  # no motion outside the image
    np.testing.assert_allclose(flow_cube[0, -1, 1:-1, 5:], np.broadcast_to((1.5, -0.5), (6, 3, 2)))


def test_crop_resize_orders_boxes_then_images():
    images = torch.arange(3, dtype=torch.float32).view(3, 1, 1, 1).expand(3, 2, 10, 10)
    boxes = torch.tensor([[0.0, 0.0, 5.0, 5.0], [2.0, 2.0, 10.0, 9.0]])
    crops = crop_resize(images.contiguous(), boxes, 4)
    assert crops.shape == (2, 3, 2, 4, 4)
    assert torch.equal(crops[1, 2], torch.full((2, 4, 4), 2.0))


# ---------------------------------------------------------------------------------------------
# Optical flow


def textured(height=96, width=128, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    noise = cv2.GaussianBlur(rng.uniform(0, 255, (height, width)).astype(np.float32), (0, 0), 2)
    noise = (noise - noise.min()) / (noise.max() - noise.min()) * 255
    return np.repeat(noise.astype(np.uint8)[..., None], 3, axis=2)


def translate(image: np.ndarray, dx: float, dy: float) -> np.ndarray:
    """Content moves by (dx, dy): out(x, y) = image(x - dx, y - dy)."""
    matrix = np.float32([[1, 0, dx], [0, 1, dy]])
    size = (image.shape[1], image.shape[0])
    return cv2.warpAffine(image, matrix, size, borderMode=cv2.BORDER_REFLECT)


@pytest.mark.parametrize(
    "estimator", [DISFlow("medium"), FarnebackFlow()], ids=["dis", "farneback"]
)
def test_flow_sign_convention(estimator):
    prev = textured()
    cur = translate(prev, 3, -2)
    flow = estimator(prev, cur)
    assert flow.shape == (96, 128, 2)
    mean = flow[16:-16, 16:-16].reshape(-1, 2).mean(0)  # channel 0 = dx, 1 = dy
    np.testing.assert_allclose(mean, [3.0, -2.0], atol=0.25)


def test_raft_runs_with_local_weights_and_explains_missing_ones(tmp_path):
    from torchvision.models.optical_flow import raft_small

    with pytest.raises(FileNotFoundError, match="preprocess.flow.weights=PATH"):
        RAFTFlow("small", weights_path=str(tmp_path / "missing.pth"))
    torch.manual_seed(0)
    torch.save(raft_small(weights=None).state_dict(), tmp_path / "raft.pth")
    raft = RAFTFlow("small", weights_path=str(tmp_path / "raft.pth"), num_iters=2)
    flow = raft(textured(60, 70), textured(60, 70, seed=1))  # padded to 128x128 inside
    assert flow.shape == (60, 70, 2) and np.isfinite(flow).all()


@pytest.mark.parametrize("first_frame", ["next", "zero"])
def test_video_flows_file(tmp_path, first_frame):
    base = textured(64, 80)
    frames = [translate(base, 2 * k, k) for k in range(6)]  # moves (+2, +1) per frame
    path = tmp_path / "v.npy"
    write_video_flows(frames, 6, DISFlow("medium"), path, first_frame, "float16")
    flows = load_flows(path, 6, (64, 80))
    assert flows.dtype == np.float16 and flows.shape == (6, 64, 80, 2)
    np.testing.assert_allclose(flows[3, 12:-12, 12:-12].reshape(-1, 2).mean(0), [2, 1], atol=0.3)
    if first_frame == "next":
        np.testing.assert_array_equal(flows[0], flows[1])
    else:
        assert not flows[0].any()
    with pytest.raises(ValueError, match=r"v\.npy has shape \(6, 64, 80, 2\).*expected"):
        load_flows(path, 7, (64, 80))
    with pytest.raises(ValueError, match="expected 7"):
        write_video_flows(frames, 7, DISFlow("medium"), tmp_path / "w.npy")
    assert not (tmp_path / "w.npy").exists()  # nothing half-written


def test_flow_units_size_scales_x_and_y_by_the_resize_factors():
    cfg = load_config(REPO / "cfgs" / "synthetic.yaml")
    base = textured(60, 90)
    frames = (base, translate(base, 2, 1))  # moves (+2, +1) pixels
    native = build_flow_estimator(cfg.preprocess.flow)(*frames)
    cfg = replaced(cfg, {"preprocess.flow.units_size": [240, 180]})  # 4x height, 2x width
    in_units = build_flow_estimator(cfg.preprocess.flow)(*frames)
    np.testing.assert_allclose(in_units, native * np.array([2.0, 4.0], np.float32), rtol=1e-6)
    np.testing.assert_allclose(in_units[15:-15, 15:-15].reshape(-1, 2).mean(0), [4, 4], atol=0.5)
    for bad in ([240], [0, 180], "240x180", [240.0, 180]):
        flow = copy.deepcopy(cfg.preprocess.flow)  # a writable section, past the config checks
        flow.units_size = bad
        with pytest.raises(ValueError, match="preprocess.flow.units_size"):
            build_flow_estimator(flow)


def test_flow_units_size_fingerprint_unchanged_at_null():
    """Null (the behaviour before the setting existed) keeps old caches and checkpoints valid;
    the hash at null is the one of a config without the key."""
    cfg = load_config(REPO / "cfgs" / "ped2_cpu.yaml")
    assert cfg.preprocess.flow.units_size is None
    assert fingerprints(cfg)["data"] == "7a443a8db92de678"  # made before units_size existed
    cfg = replaced(cfg, {"preprocess.flow.units_size": [768, 1024]})
    assert fingerprints(cfg)["data"] != "7a443a8db92de678"


# ---------------------------------------------------------------------------------------------
# Boxes


def moving_squares(count=5, speed=3, flat=False):
    """Frames with two 12x12 textured squares moving right by `speed` px/frame, and their
    top-left corners per frame. `flat` squares have no texture."""
    rng = np.random.default_rng(0)
    texture = rng.integers(120, 256, (12, 12, 1)).astype(np.uint8)
    frames, corners = [], []
    for k in range(count):
        frame = np.full((80, 120, 3), 40, np.uint8)
        tops = [(10 + speed * k, 10), (60 + speed * k, 50)]
        for x, y in tops:
            frame[y : y + 12, x : x + 12] = 220 if flat else texture
        frames.append(frame)
        corners.append(tops)
    return frames, corners


def test_foreground_boxes_find_moving_squares():
    frames, corners = moving_squares()
    fg = ForegroundBoxes(binary_thr=18, gauss_mask_size=3, contour_min_area=100, merge="none")
    blurred = tuple(fg.blur(f) for f in frames[1:4])
    boxes = fg(blurred)  # boxes of frame 2
    assert boxes.shape == (2, 4) and boxes.dtype == np.float32
    boxes = boxes[np.argsort(boxes[:, 0])]
    for box, (x, y) in zip(boxes, corners[2]):
        # the square of frame 2 lies inside its box; the box spans at most the squares of
        # frames 1..3 plus blur (1 px) and growth (2 px)
        assert box[0] <= x and box[1] <= y and box[2] >= x + 12 and box[3] >= y + 12
        assert box[0] >= x - 3 - 3 and box[2] <= x + 12 + 3 + 3
        assert box[1] >= y - 3 and box[3] <= y + 12 + 3
    # a detector box over the first square blanks it out of the foreground
    assert len(fg(blurred, blank=np.array([[15.0, 9.0, 30.0, 23.0]]))) == 1


def test_flat_objects_break_up_and_merge_repairs_them():
    """A uniform object only changes at its leading and trailing edges: the plain recipe gives
    two boxes per object; merging boxes within merge_gap px gives one."""
    frames, corners = moving_squares(flat=True)
    plain = ForegroundBoxes(contour_min_area=30, merge="none")
    assert len(plain(tuple(plain.blur(f) for f in frames[1:4]))) == 4
    overrides = ["contour_min_area=30", "merge=merge", "merge_gap=4", "merge_overlap=0.0"]
    box_cfg = load_config(None, [f"preprocess.boxes.{o}" for o in overrides]).preprocess.boxes
    boxes = list(BoxExtractor(box_cfg).video_boxes(frames))[2]
    assert len(boxes) == 2
    for box, (x, y) in zip(boxes[np.argsort(boxes[:, 0])], corners[2]):
        assert box[0] <= x and box[2] >= x + 12 and box[1] <= y and box[3] >= y + 12


def test_foreground_filters_and_video_ends():
    frames, _ = moving_squares(count=4)
    still = [np.full((80, 120, 3), 40, np.uint8)] * 3
    fg = ForegroundBoxes(contour_min_area=100)
    assert len(fg(tuple(fg.blur(f) for f in still))) == 0  # nothing moves
    big = ForegroundBoxes(contour_min_area=20 * 20)
    assert len(big(tuple(big.blur(f) for f in frames[:3]))) == 0  # too small
    bars = []
    for k in range(3):  # a 2 px thin bar moving down: aspect ratio > 10
        frame = np.full((80, 120, 3), 40, np.uint8)
        frame[10 + k : 12 + k, 5:100] = 220
        bars.append(frame)
    assert len(fg(tuple(fg.blur(f) for f in bars))) == 0
    extractor = BoxExtractor(load_config(None).preprocess.boxes)
    per_frame = list(extractor.video_boxes(frames))
    assert len(per_frame) == 4 and all(len(b) == 2 for b in per_frame)


def test_video_ends_count_their_one_difference_twice():
    """A still square brightening by 10 per frame: inner frames sum two differences (20 > 18);
    the first and last frame have one difference, which must count twice to give the same box
    (counted once it falls below the threshold, and Ped2's end frames broke into small boxes)."""
    frames = []
    for k in range(4):
        frame = np.full((60, 80, 3), 40, np.uint8)
        frame[20:40, 30:50] = 100 + 10 * k
        frames.append(frame)
    extractor = BoxExtractor(load_config(None).preprocess.boxes)
    per_frame = list(extractor.video_boxes(frames))
    assert all(len(b) == 1 for b in per_frame)
    for boxes in per_frame:
        np.testing.assert_allclose(boxes[0], per_frame[1][0])
    fg = extractor.foreground
    blurred = [fg.blur(f) for f in frames]
    assert fg.moving_mask((None, blurred[0], blurred[1])).any()
    assert not ForegroundBoxes(binary_thr=18).moving_mask(tuple(blurred[:2]) + (blurred[1],)).any()


def test_closing_and_merge_join_a_broken_object():
    texture = np.random.default_rng(1).integers(120, 256, (40, 10, 1)).astype(np.uint8)
    frames = []
    for k in range(3):  # a textured object in two parts, 4 px apart, moving together
        frame = np.full((60, 80, 3), 40, np.uint8)
        frame[10:30, 20 + 2 * k : 30 + 2 * k] = texture[:20]
        frame[34:50, 20 + 2 * k : 30 + 2 * k] = texture[24:]
        frames.append(frame)
    counts = {}
    for merge, gap, overlap in (("none", 0, 0.0), ("closing", 0, 0.0), ("merge", 3, 0.0)):
        fg = ForegroundBoxes(
            contour_min_area=50, merge=merge, closing_size=3, merge_gap=gap, merge_overlap=overlap
        )
        counts[merge] = len(fg(tuple(fg.blur(f) for f in frames)))
    assert counts == {"none": 2, "closing": 1, "merge": 1}


def test_remove_covered_and_merge_close():
    boxes = np.array(
        [[0, 0, 20, 20], [2, 2, 12, 12], [15, 15, 40, 40], [50, 0, 60, 10]], np.float32
    )
    kept = remove_covered(boxes, cover_thr=0.6)  # the 10x10 box lies inside the 20x20 one
    assert kept.tolist() == [[0, 0, 20, 20], [15, 15, 40, 40], [50, 0, 60, 10]]
    merged = merge_close(boxes, gap=0)  # chains 0-1-2; box 3 is 10 px away
    assert sorted(merged.tolist()) == [[0, 0, 40, 40], [50, 0, 60, 10]]
    assert len(merge_close(boxes, gap=10)) == 1
    partial = merge_close(boxes, gap=0, min_overlap=0.5)  # only the contained box merges
    assert sorted(partial.tolist()) == [[0, 0, 20, 20], [15, 15, 40, 40], [50, 0, 60, 10]]


def test_detector_needs_weights_and_runs_with_them(tmp_path):
    from torchvision.models.detection import fasterrcnn_resnet50_fpn

    cfg = load_config(None, ["preprocess.boxes.detector=fasterrcnn_resnet50_fpn"])
    cfg = replaced(cfg, {"preprocess.boxes.detector_weights": str(tmp_path / "missing.pth")})
    with pytest.raises(FileNotFoundError, match="preprocess.boxes.detector_weights=PATH"):
        BoxExtractor(cfg.preprocess.boxes)
    torch.manual_seed(0)
    model = fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=91)
    torch.save(model.state_dict(), tmp_path / "det.pth")
    changes = {"preprocess.boxes.detector_weights": str(tmp_path / "det.pth")}
    cfg = replaced(cfg, dict(changes, **{"preprocess.boxes.conf_thr": 0.0}))
    extractor = BoxExtractor(cfg.preprocess.boxes)
    model = extractor.detector.model  # keep the test fast: small input, few proposals
    model.transform.min_size, model.transform.max_size = (64,), 96
    model.rpn._pre_nms_top_n["testing"] = model.rpn._post_nms_top_n["testing"] = 20
    frames, _ = moving_squares(count=3)
    boxes = list(extractor.video_boxes(frames))
    assert len(boxes) == 3 and all(b.ndim == 2 and b.shape[1] == 4 for b in boxes)


# ---------------------------------------------------------------------------------------------
# Cubes


class CountingVideo:
    """A stand-in for datasets.frames.Video whose frame k has every pixel equal to 10 k."""

    def __init__(self, name, count, size=(24, 40)):
        self.name, self.num_frames, self.frame_size = name, count, size

    def frames(self):
        for k in range(self.num_frames):
            yield np.full((*self.frame_size, 3), 10 * k, np.uint8)


def test_cube_frame_alignment(tmp_path):
    videos = [CountingVideo("a", 7), CountingVideo("b", 3)]
    box = np.array([[4.0, 2.0, 20.0, 18.0]], np.float32)
    boxes = [[box] * 7, [box, np.zeros((0, 4), np.float32), np.concatenate([box, box + 1])]]

    def flows_of(v):  # flow of frame j is (j, -j) everywhere
        count = videos[v].num_frames
        values = np.arange(count, dtype=np.float32)
        flows = np.zeros((count, 24, 40, 2), np.float16)
        flows[..., 0] = values[:, None, None]
        flows[..., 1] = -values[:, None, None]
        return flows

    out = tmp_path / "cubes" / "training"
    manifest = {"videos": ["a", "b"], "num_frames": [7, 3], "frame_size": [24, 40], "split": "t"}
    count = write_split_cubes(out, videos, boxes, flows_of, manifest, size=8, chunk_size=3)
    assert count == 10
    data = CubeDataset(out)
    assert len(data) == 10 and data.videos == ["a", "b"] and data.num_frames == [7, 3]
    assert data.video_idx.tolist() == [0] * 7 + [1] * 3
    assert data.frame_idx.tolist() == list(range(7)) + [0, 2, 2]
    for n in range(10):
        item = data[n]
        i = int(data.frame_idx[n])
        frames_expected = [10 * max(j, 0) / 255 for j in range(i - 4, i + 1)]
        assert item["frames"].shape == (5, 3, 8, 8) and item["frames"].dtype == torch.float32
        np.testing.assert_allclose(item["frames"][:, 0, 0, 0].numpy(), frames_expected, atol=1e-6)
        flows_expected = [max(j, 0) for j in range(i - 3, i + 1)]
        assert item["flows"].shape == (4, 2, 8, 8)
        np.testing.assert_allclose(item["flows"][:, 0, 3, 3].numpy(), flows_expected)
        np.testing.assert_allclose(item["flows"][:, 1, 3, 3].numpy(), [-f for f in flows_expected])
        assert item["index"] == n
    np.testing.assert_array_equal(data.boxes[-1], box[0] + 1)
    subset = CubeDataset(out, max_cubes=4)
    assert len(subset) == 4 and subset.frame_idx.tolist() == [0, 3, 6, 2]
    assert subset[3]["frames"][4, 0, 0, 0] == pytest.approx(20 / 255)


def test_cube_dataset_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no manifest.json"):
        CubeDataset(tmp_path / "nothing")


# ---------------------------------------------------------------------------------------------
# The whole step: synthetic data, caching, resume, errors


def tiny_synthetic(tmp_path, *more):
    return load_config(
        REPO / "cfgs" / "synthetic.yaml",
        [
            f"data.root={tmp_path / 'data'}",
            f"data.cache_dir={tmp_path / 'cache'}",
            "synthetic.height=48",
            "synthetic.width=64",
            "synthetic.num_frames=10",
            "synthetic.num_train_videos=2",
            "synthetic.num_test_videos=2",
            "synthetic.walker_size=[6, 14]",
            "preprocess.boxes.contour_min_area=30",
            *more,
        ],
    )


def test_run_preprocess_synthetic_caches_and_resumes(tmp_path):
    cfg = tiny_synthetic(tmp_path)
    summary = run_preprocess(cfg)
    train, test = summary["splits"]["training"], summary["splits"]["testing"]
    assert train["frames"] == 20 and test["frames"] == 20
    assert train["cubes"] == train["boxes"] > 0 and test["cubes"] > 0
    cubes = CubeDataset(CubeSource.from_config(cfg).folder("testing"))
    assert cubes.manifest["frame_size"] == [48, 64] and cubes.num_frames == [10, 10]
    assert cubes.manifest["config"]["preprocess"]["flow"]["method"] == "dis"
    labels = LabelSource.from_config(cfg).load(cubes.videos, cubes.num_frames)
    assert all(v.shape == (10,) for v in labels.values())
    assert (tmp_path / "cache" / "config.yaml").is_file()
    assert (tmp_path / "cache" / "preprocess_summary.json").is_file()
    assert len(CubeSource.from_config(cfg).open("testing")) == test["cubes"]
    other = tiny_synthetic(tmp_path, "preprocess.flow.units_size=[96, 128]")
    with pytest.raises(CheckpointError, match=r"preprocess\.flow\.units_size: None there"):
        # cubes of other settings are never read silently
        CubeSource.from_config(other).open("testing")

    again = run_preprocess(cfg)  # everything is up to date
    for split in ("training", "testing"):
        assert again["splits"][split]["computed"] == {"boxes": 0, "flows": 0, "cubes": False}

    (tmp_path / "cache" / "boxes" / "training" / "01.json").unlink()  # an interrupted run
    cfg = replaced(cfg, {"preprocess.cubes.chunk_size": 5})  # part of the fingerprint
    resumed = run_preprocess(cfg, splits=["training"])["splits"]["training"]
    assert resumed["computed"] == {"boxes": 1, "flows": 0, "cubes": True}
    assert resumed["cubes"] == train["cubes"]

    flow_file = tmp_path / "cache" / "flows" / "training" / "02.npy"
    np.save(flow_file, np.zeros((3, 48, 64, 2), np.float16))  # does not match its frames
    cfg = replaced(cfg, {"preprocess.cubes.chunk_size": 7})
    with pytest.raises(ValueError, match=r"flows/training/02\.npy has shape \(3, 48, 64, 2\)"):
        run_preprocess(cfg, splits=["training"])


def test_copied_data_keeps_its_caches_and_changed_frames_do_not(tmp_path):
    cfg = tiny_synthetic(tmp_path)
    run_preprocess(cfg)
    # a copy of the data elsewhere, with new file times, is the same data: nothing is recomputed
    shutil.copytree(tmp_path / "data", tmp_path / "copy", copy_function=shutil.copy)
    frame = sorted((tmp_path / "copy").rglob("training/frames/02/*.*"))[0]
    os.utime(frame, ns=(1, 1))
    copied = replaced(cfg, {"data.root": str(tmp_path / "copy")})
    moved = run_preprocess(copied)
    for split in ("training", "testing"):
        assert moved["splits"][split]["computed"] == {"boxes": 0, "flows": 0, "cubes": False}
    assert len(CubeSource.from_config(copied).open("testing")) > 0  # the cubes stay usable
    image = cv2.imread(str(frame))
    cv2.imwrite(str(frame), 255 - image)  # new content under the same name: recomputed
    changed = run_preprocess(copied, splits=["training"])["splits"]["training"]
    assert changed["computed"] == {"boxes": 1, "flows": 1, "cubes": True}


def test_synthetic_data_is_deterministic_with_labels(tmp_path):
    from datasets import synthetic

    cfg = tiny_synthetic(tmp_path)
    synthetic.generate(tmp_path / "a", cfg.synthetic)
    synthetic.generate(tmp_path / "b", cfg.synthetic)
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.*"))
    assert len(files) == 2 * 10 + 2 * 10 + 2 + 1
    for rel in files:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel
    masks = [np.load(tmp_path / "a" / "testing" / "test_frame_mask" / f"0{v}.npy") for v in (1, 2)]
    assert all(m.dtype == np.uint8 and m.shape == (10,) for m in masks)
    assert all(0 < m.sum() < 10 for m in masks)  # each test video has normal and abnormal frames
    (tmp_path / "c").mkdir()
    with pytest.raises(FileExistsError, match="not a synthetic dataset"):
        synthetic.generate(tmp_path / "c", cfg.synthetic)


# ---------------------------------------------------------------------------------------------
# Real data


@pytest.mark.slow
def test_ped2_two_videos(tmp_path):
    if not PED2.is_dir():
        pytest.skip(f"real data not found at {PED2} (a user's clone does not have it)")
    cfg = load_config(
        REPO / "cfgs" / "ped2.yaml",
        [
            f"data.root={PED2.parent}",
            f"data.cache_dir={tmp_path / 'cache'}",
            "data.videos=['01', '02']",
            "data.max_frames=30",
        ],
    )
    summary = run_preprocess(cfg)
    for split in ("training", "testing"):
        s = summary["splits"][split]
        assert s["videos"] == 2 and s["frames"] == 60
        assert 2 <= s["boxes_per_frame"] <= 20, s
        data = CubeDataset(CubeSource.from_config(cfg).folder(split))
        assert len(data) == s["cubes"] and data.manifest["frame_size"] == [240, 360]
        assert data.videos == ["01", "02"] and data.num_frames == [30, 30]
        item = data[len(data) // 2]
        assert 0.05 < float(item["frames"].mean()) < 0.95
        box = data.boxes[len(data) // 2]
        assert 0 <= box[0] < box[2] <= 360 and 0 <= box[1] < box[3] <= 240
    labels = LabelSource.from_config(cfg).load(["01", "02"], [30, 30])
    assert labels["01"].shape == (30,)
    videos = list_videos(cfg.data, "testing")
    assert [v.source.name for v in videos] == ["01", "02"]
    shutil.rmtree(tmp_path / "cache")
