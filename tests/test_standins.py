"""Avenue and ShanghaiTech cannot be run here (no data): the real configs run the whole pipeline
on tiny stand-ins written in each data set's distributed layout and label format.

Only data.root/cache_dir, run_dir, the model size and the schedule are overridden (plus, for
Avenue, training stretches scaled to the short stand-in videos; the real stretches are checked on
in-memory videos below).
"""

from pathlib import Path

import cv2
import numpy as np
import pytest
import scipy.io
import torch

from datasets.cubes import CubeSource
from datasets.frames import Video, exclude_stretches, list_videos, open_video, read_video
from datasets.synthetic import Mover, make_background, render
from pipeline.run import run_pipeline
from utils.config import load_config
from utils.io import read_json

FRAME_SIZE = (120, 160)  # (H, W): room for two 44x44 objects, above both configs' 40x40 minimum
SQUARE = 44
TINY = [
    "model.memae.feature_root=4",
    "model.memae.num_slots=20",
    "model.cvae.nf_start=8",
    "model.cvae.nf_max=16",
    "stage1.num_epochs=1",
    "stage2.num_epochs=1",
    "stage3.num_epochs=1",
    "train.cpu_threads=1",
    "eval.plots=false",
]


def moving_squares(num_frames: int, seed: int, fast: tuple[int, int] | None = None) -> np.ndarray:
    """Frames [T, H, W, 3] uint8: two textured squares walking back and forth over a static
    background; during frames fast = (first, last) (0-based, inclusive) the upper one runs."""
    rng = np.random.default_rng(seed)
    height, width = FRAME_SIZE
    background = make_background(rng, height, width)
    squares = []
    for y, vx in ((10, 2.0), (height - SQUARE - 10, -2.5)):
        # high-contrast texture: a shifted square differs from itself everywhere, so the
        # foreground mask covers it whole (a flat interior would only show its edges)
        texture = cv2.GaussianBlur(rng.uniform(0, 255, (SQUARE, SQUARE, 3)), (0, 0), 1.0)
        sprite = texture.astype(np.uint8)
        x = rng.uniform(0, width - SQUARE)
        squares.append(Mover(sprite, np.ones((SQUARE, SQUARE), np.float32), x, y, vx, 0.0, False))
    frames = []
    for t in range(num_frames):
        for k, m in enumerate(squares):
            speed = 4.0 if fast and k == 0 and fast[0] <= t <= fast[1] else 1.0
            m.x += m.vx * speed
            if not 0 <= m.x <= width - SQUARE:  # bounce off the image borders
                m.vx = -m.vx
                m.x = float(np.clip(m.x, 0, width - SQUARE))
        frames.append(render(background, squares, rng, noise=1.5))
    return np.stack(frames)


def write_avi(path: Path, frames: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    height, width = frames.shape[1:3]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25, (width, height))
    assert writer.isOpened(), f"OpenCV cannot write MJPG to {path}"
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()


def write_jpgs(folder: Path, frames: np.ndarray) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for k, frame in enumerate(frames):  # ShanghaiTech numbers its test frames 000.jpg, 001.jpg
        cv2.imwrite(str(folder / f"{k:03d}.jpg"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))


def intervals_to_labels(intervals: np.ndarray, count: int) -> np.ndarray:
    """Frame labels from a 2xK matrix of 1-based inclusive [start; end] columns."""
    labels = np.zeros(count, np.uint8)
    for start, end in np.asarray(intervals, dtype=int).T:
        labels[start - 1 : end] = 1
    return labels


def run_standin(cfg_path: str, root: Path, tmp_path: Path, *overrides: str) -> tuple:
    cfg = load_config(
        cfg_path,
        [
            f"data.root={root}",
            f"data.cache_dir={tmp_path / 'cache'}",
            f"run_dir={tmp_path / 'run'}",
            *TINY,
            *overrides,
        ],
    )
    threads, cv_threads = torch.get_num_threads(), cv2.getNumThreads()
    cv2.setNumThreads(1)  # a shared machine: keep the flow estimator on one core
    try:
        metrics = run_pipeline(cfg)
    finally:
        torch.set_num_threads(threads)  # cpu_threads=1 is global; leave other tests alone
        cv2.setNumThreads(cv_threads)
    return cfg, metrics


def check_scores(cfg, metrics: dict, labels: dict[str, np.ndarray | None]) -> None:
    """scores.json has every test video with the expected labels; metrics count them."""
    scores = read_json(Path(cfg.run_dir) / "eval" / "scores.json")
    by_name = {v["name"]: v for v in scores["videos"]}
    assert sorted(by_name) == sorted(labels)
    for name, expected in labels.items():
        video = by_name[name]
        assert len(video["smoothed_score"]) == video["num_frames"]
        if expected is None:
            assert video["labels"] is None
        else:
            assert video["num_frames"] == len(expected)
            assert video["labels"] == expected.tolist(), name
    drop = cfg.eval.drop_first
    labelled = [lab for lab in labels.values() if lab is not None]
    main = metrics["scores"][metrics["main_score"]]
    assert main["num_labelled_videos"] == len(labelled)
    assert main["num_scored_frames"] == sum(len(lab) - drop for lab in labelled)
    assert main["num_abnormal_frames"] == sum(int(lab[drop:].sum()) for lab in labelled)
    assert main["micro_auroc"] is not None and 0.0 <= main["micro_auroc"] <= 100.0
    assert metrics["num_objects"] > 0


# ---------------------------------------------------------------------------------------------
# CUHK Avenue: training_videos/*.avi, testing_videos/*.avi, avenue.mat (cell array gt)

AVENUE_TRAIN = {"01": 40, "02": 60, "03": 48}
# Scaled-down stretches: two inside 02 (three clips) and one reaching the end of 03 (one clip).
AVENUE_EXCLUDE = "data.exclude_train=[['02', 16, 25], ['02', 36, 40], ['03', 40, 48]]"
AVENUE_CLIPS = {"01": (0, 40), "02_a": (0, 15), "02_b": (25, 10), "02_c": (40, 20), "03_a": (0, 39)}
AVENUE_TEST = {  # name: (frames, gt entry: 2xK [start; end] columns, 1-based inclusive)
    "01": (50, np.array([[10, 30], [20, 40]], float)),
    "02": (45, np.array([[12], [25]], float)),
}


def make_avenue(root: Path) -> None:
    folder = root / "avenue"
    for k, (name, count) in enumerate(AVENUE_TRAIN.items()):
        write_avi(folder / "training_videos" / f"{name}.avi", moving_squares(count, seed=k))
    gt = np.empty((1, len(AVENUE_TEST)), dtype=object)  # MATLAB 1xN cell, as avenue.mat
    for k, (name, (count, intervals)) in enumerate(AVENUE_TEST.items()):
        first, last = intervals[0, 0] - 1, intervals[1, 0] - 1
        frames = moving_squares(count, seed=10 + k, fast=(int(first), int(last)))
        write_avi(folder / "testing_videos" / f"{name}.avi", frames)
        gt[0, k] = intervals
    scipy.io.savemat(str(folder / "avenue.mat"), {"gt": gt})


def test_avenue_real_stretches_make_the_clips():
    """The configured stretches (docs/method.md §7) on stand-in videos of 1600 frames (longer than
    every stretch; not Avenue's real lengths): 02 -> 3 clips, 04 and 07 -> 2 clips each."""
    cfg = load_config("cfgs/avenue.yaml")
    videos = [
        Video(f"{k:02d}", Path(f"{k:02d}.avi"), (), 0, 1600, (360, 640)) for k in range(1, 17)
    ]
    clips = {
        v.name: (v.start, v.num_frames) for v in exclude_stretches(videos, cfg.data.exclude_train)
    }
    assert clips["02_a"] == (0, 310) and clips["02_b"] == (521, 249) and clips["02_c"] == (831, 769)
    assert clips["04_a"] == (0, 1459) and clips["04_b"] == (1510, 90)
    assert clips["07_a"] == (0, 740) and clips["07_b"] == (900, 700)
    assert len(clips) == 16 + 2 + 1 + 1
    # A stretch that reaches the end of its video leaves one clip (the authors' count of 19
    # clips implies that one of 04 / 07 ends inside its stretch).
    short = [
        v if v.name != "04" else Video("04", v.source, (), 0, 1500, v.frame_size) for v in videos
    ]
    clips = [v.name for v in exclude_stretches(short, cfg.data.exclude_train)]
    assert len(clips) == 19 and "04_a" in clips and "04_b" not in clips


@pytest.mark.slow  # a whole pipeline
def test_avenue_layout_pipeline(tmp_path):
    root = tmp_path / "data"
    make_avenue(root)
    cfg, metrics = run_standin("cfgs/avenue.yaml", root, tmp_path, AVENUE_EXCLUDE)
    assert cfg.data.train_split == "training_videos" and cfg.data.label_format == "mat_intervals"

    train = read_json(CubeSource.from_config(cfg).folder(cfg.data.train_split) / "manifest.json")
    assert train["videos"] == list(AVENUE_CLIPS)
    assert train["num_frames"] == [n for _, n in AVENUE_CLIPS.values()]
    assert [s["start"] for s in train["sources"]] == [s for s, _ in AVENUE_CLIPS.values()]
    assert train["frame_size"] == list(FRAME_SIZE)

    # A clip of a video file starts at the right decoded frame.
    source = open_video(root / "avenue" / "training_videos" / "02.avi")
    clip = next(v for v in list_videos(cfg.data, cfg.data.train_split) if v.name == "02_b")
    np.testing.assert_array_equal(next(clip.frames()), read_video(source)[25])

    labels = {name: intervals_to_labels(g, n) for name, (n, g) in AVENUE_TEST.items()}
    check_scores(cfg, metrics, labels)
    assert metrics["scores"][metrics["main_score"]]["num_abnormal_frames"] == 22 + 14


# ---------------------------------------------------------------------------------------------
# ShanghaiTech: training/videos/*.avi, testing/frames/<video>/NNN.jpg, testing/test_frame_mask

SHTECH_TRAIN = {"01_001": 50, "01_002": 40}
SHTECH_TEST = {"01_0014": (45, (15, 29)), "01_0015": (40, (5, 19))}  # frames, abnormal 0-based


def make_shanghaitech(root: Path) -> dict[str, np.ndarray]:
    folder = root / "shanghaitech"
    for k, (name, count) in enumerate(SHTECH_TRAIN.items()):
        write_avi(folder / "training" / "videos" / f"{name}.avi", moving_squares(count, seed=k))
    labels = {}
    for k, (name, (count, (first, last))) in enumerate(SHTECH_TEST.items()):
        write_jpgs(
            folder / "testing" / "frames" / name, moving_squares(count, 20 + k, (first, last))
        )
        mask = np.zeros(count, np.int64)  # integer 0/1 per frame, not uint8 like ours
        mask[first : last + 1] = 1
        (folder / "testing" / "test_frame_mask").mkdir(parents=True, exist_ok=True)
        np.save(folder / "testing" / "test_frame_mask" / f"{name}.npy", mask)
        labels[name] = mask.astype(np.uint8)
    # Pixel masks sit next to the frames in the download; they are neither videos nor labels here.
    (folder / "testing" / "test_pixel_mask").mkdir()
    np.save(folder / "testing" / "test_pixel_mask" / "01_0014.npy", np.zeros((2, 4, 4), np.uint8))
    return labels


@pytest.mark.slow  # a whole pipeline
def test_shanghaitech_layout_pipeline(tmp_path):
    root = tmp_path / "data"
    labels = make_shanghaitech(root)
    cfg, metrics = run_standin("cfgs/shanghaitech.yaml", root, tmp_path)
    assert cfg.model.memae.mem_usage == [False, True, True]

    train = read_json(CubeSource.from_config(cfg).folder(cfg.data.train_split) / "manifest.json")
    assert train["videos"] == list(SHTECH_TRAIN)
    assert train["num_frames"] == list(SHTECH_TRAIN.values())
    assert all(s["source"].endswith(".avi") for s in train["sources"])
    test = read_json(CubeSource.from_config(cfg).folder(cfg.data.test_split) / "manifest.json")
    assert test["videos"] == list(SHTECH_TEST)
    assert all(Path(s["source"]).parent.name == "frames" for s in test["sources"])

    check_scores(cfg, metrics, labels)
    assert metrics["scores"][metrics["main_score"]]["num_abnormal_frames"] == 15 + 15


def test_split_paths_nested_and_split_folder_itself(tmp_path):
    """Splits and frames_dir are path fragments: `frames_dir: .` reads the split folder itself
    (Avenue's training_videos/) and a split may be nested (ShanghaiTech's training/videos)."""
    frames = moving_squares(6, seed=0)
    write_avi(tmp_path / "toy" / "training" / "videos" / "a.avi", frames)
    write_jpgs(tmp_path / "toy" / "testing" / "frames" / "b", frames)
    write_avi(tmp_path / "toy" / "testing_videos" / "c.avi", frames)
    data = load_config(
        None, [f"data.root={tmp_path}", "data.dataset=toy", "data.frames_dir=."]
    ).data
    assert [v.name for v in list_videos(data, "training/videos")] == ["a"]
    assert [v.name for v in list_videos(data, "testing/frames")] == ["b"]
    assert [v.name for v in list_videos(data, "testing_videos")] == ["c"]
