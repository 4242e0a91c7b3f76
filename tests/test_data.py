"""Video reading, bad-input errors, training-stretch exclusion and every label format."""

from pathlib import Path

import cv2
import numpy as np
import pytest
import scipy.io

from datasets.frames import list_videos, open_video, read_video
from datasets.labels import LabelSource
from utils.config import load_config


def write_frames(folder: Path, count: int, size=(24, 32), ext="png", start=0, value=None):
    folder.mkdir(parents=True, exist_ok=True)
    for k in range(count):
        frame = np.full((*size, 3), (k if value is None else value) % 256, np.uint8)
        cv2.imwrite(str(folder / f"{start + k:03d}.{ext}"), frame)


def data_cfg(root: Path, *overrides: str):
    return load_config(None, [f"data.root={root}", "data.dataset=toy", *overrides])


def test_frames_sorted_numerically_and_rgb(tmp_path):
    folder = tmp_path / "v"
    folder.mkdir()
    for k in (9, 10, 8, 11, 12):  # "10" sorts before "8" as text
        frame = np.zeros((4, 6, 3), np.uint8)
        frame[..., 2] = k  # OpenCV writes BGR: channel 2 is red
        cv2.imwrite(str(folder / f"img_{k}.png"), frame)
    video = open_video(folder)
    frames = read_video(video)
    assert video.num_frames == 5 and video.frame_size == (4, 6)
    assert frames[:, 0, 0, 0].tolist() == [8, 9, 10, 11, 12]  # red first: RGB


def test_layout_lists_folders_and_video_files(tmp_path):
    split = tmp_path / "toy" / "training" / "frames"
    write_frames(split / "02", 6)
    write_frames(split / "01", 7)
    write_frames(split / "01_gt", 7)  # UCSD pixel masks next to the videos: not a video
    writer = cv2.VideoWriter(str(split / "03.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 10, (32, 24))
    for k in range(8):
        writer.write(np.full((24, 32, 3), 30 * k, np.uint8))
    writer.release()
    videos = list_videos(data_cfg(tmp_path).data, "training")
    assert [v.name for v in videos] == ["01", "02", "03"]
    assert [v.num_frames for v in videos] == [7, 6, 8]
    decoded = read_video(videos[2])
    assert decoded.shape == (8, 24, 32, 3)
    assert abs(float(decoded[5].mean()) - 150) < 8  # MJPG is lossy


def test_exclude_train_splits_videos_into_clips(tmp_path):
    split = tmp_path / "toy" / "training" / "frames"
    write_frames(split / "01", 20)
    write_frames(split / "02", 30)
    cfg = data_cfg(tmp_path, "data.exclude_train=[['02', 6, 10], ['02', 21, 26], [1, 18, 25]]")
    with pytest.warns(UserWarning, match=r"02_c \(frames 27-30"):  # 4 frames left: dropped
        videos = list_videos(cfg.data, "training")
    names = {v.name: v for v in videos}
    assert list(names) == ["01_a", "02_a", "02_b"]
    assert names["02_a"].num_frames == 5
    clip = names["02_b"]  # frames 11..20 (1-based)
    assert clip.num_frames == 10
    assert read_video(clip)[:, 0, 0, 0].tolist() == list(range(10, 20))
    assert names["01_a"].num_frames == 17
    # the test split is never cut
    write_frames(tmp_path / "toy" / "testing" / "frames" / "02", 30)
    assert [v.num_frames for v in list_videos(cfg.data, "testing")] == [30]


def test_bad_exclude_train_entries(tmp_path):
    write_frames(tmp_path / "toy" / "training" / "frames" / "01", 10)
    with pytest.raises(ValueError, match="not in the training split"):
        list_videos(data_cfg(tmp_path, "data.exclude_train=[['09', 1, 2]]").data, "training")
    with pytest.raises(ValueError, match="first <= 10"):
        list_videos(data_cfg(tmp_path, "data.exclude_train=[['01', 11, 12]]").data, "training")


@pytest.mark.parametrize(
    "damage, message",
    [
        ("gap", "frame missing"),
        ("corrupt", "cannot read frame"),
        ("empty", "has no frames"),
        ("short", "fewer than 5"),
    ],
)
def test_bad_frame_folders_name_the_file(tmp_path, damage, message):
    folder = tmp_path / "v"
    write_frames(folder, 3 if damage == "short" else 8)
    if damage == "gap":
        (folder / "004.png").unlink()
    if damage == "corrupt":
        (folder / "006.png").write_bytes(b"not a png")
    if damage == "empty":
        for path in folder.iterdir():
            path.unlink()
    with pytest.raises((ValueError, FileNotFoundError), match=message) as err:
        read_video(open_video(folder))
    assert str(folder) in str(err.value)


def test_mixed_frame_sizes_name_the_file(tmp_path):
    folder = tmp_path / "v"
    write_frames(folder, 6)
    write_frames(folder, 1, size=(20, 32), start=4)
    with pytest.raises(ValueError, match=r"004\.png has size 20x32"):
        read_video(open_video(folder))


def test_max_frames_and_video_selection(tmp_path):
    split = tmp_path / "toy" / "testing" / "frames"
    for name in ("01", "02", "03"):
        write_frames(split / name, 12)
    cfg = data_cfg(tmp_path, "data.videos=['03', '01']", "data.max_frames=7")
    videos = list_videos(cfg.data, "testing")
    assert [(v.name, v.num_frames) for v in videos] == [("03", 7), ("01", 7)]
    with pytest.raises(ValueError, match=r"\['09'\] not found"):
        list_videos(data_cfg(tmp_path, "data.videos=['09']").data, "testing")


# ---------------------------------------------------------------------------------------------
# Labels


def label_cfg(root: Path, fmt: str, path: str, *more: str):
    return data_cfg(root, f"data.label_format={fmt}", f"data.label_path={path}", *more)


def test_labels_none(tmp_path):
    cfg = label_cfg(tmp_path, "none", "x")
    assert LabelSource.from_config(cfg).load(["a"], [5]) == {"a": None}


def test_labels_npy_masks(tmp_path):
    folder = tmp_path / "toy" / "gt"
    folder.mkdir(parents=True)
    np.save(folder / "01.npy", np.array([0, 0, 1, 1, 0], np.uint8))
    np.save(folder / "02.npy", np.array([True, False, False, False, True]))
    cfg = label_cfg(tmp_path, "npy_masks", "gt")
    labels = LabelSource.from_config(cfg).load(["01", "02", "03"], [5, 5, 5])
    assert labels["01"].tolist() == [0, 0, 1, 1, 0] and labels["01"].dtype == np.uint8
    assert labels["02"].tolist() == [1, 0, 0, 0, 1]
    assert labels["03"] is None  # held-out labels: scored, left out of AUROC
    with pytest.raises(ValueError, match=r"01\.npy cover 5 frames but the video has 6"):
        LabelSource.from_config(cfg).load(["01"], [6])
    short = label_cfg(tmp_path, "npy_masks", "gt", "data.max_frames=3")
    assert LabelSource.from_config(short).load(["01"], [3])["01"].tolist() == [0, 0, 1]


def test_labels_npy_refuses_pickles(tmp_path):
    folder = tmp_path / "toy" / "gt"
    folder.mkdir(parents=True)
    np.save(folder / "01.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="01.npy"):
        LabelSource.from_config(label_cfg(tmp_path, "npy_masks", "gt")).load(["01"], [1])


def save_gt(path: Path, entries: list) -> None:
    """A MATLAB cell array `gt` with one entry per video, as in ped2.mat / avenue.mat."""
    cell = np.empty((1, len(entries)), dtype=object)
    for k, entry in enumerate(entries):
        cell[0, k] = np.array(entry, dtype=np.float64)
    scipy.io.savemat(str(path), {"gt": cell})


def test_labels_mat_intervals(tmp_path):
    (tmp_path / "toy").mkdir()
    save_gt(
        tmp_path / "toy" / "gt.mat",
        [
            [[3], [5]],  # one [start; end] pair: frames 3..5 (1-based, inclusive)
            [[1, 8], [2, 10]],  # two pairs: 1..2 and 8..10
            np.zeros((2, 0)),  # a normal video
        ],
    )
    cfg = label_cfg(tmp_path, "mat_intervals", "gt.mat")
    labels = LabelSource.from_config(cfg).load(["a", "b", "c"], [6, 10, 4])
    assert labels["a"].tolist() == [0, 0, 1, 1, 1, 0]
    assert labels["b"].tolist() == [1, 1, 0, 0, 0, 0, 0, 1, 1, 1]
    assert labels["c"].tolist() == [0, 0, 0, 0]
    with pytest.raises(ValueError, match=r"gt\.mat has 3 gt entries but there are 2 videos"):
        LabelSource.from_config(cfg).load(["a", "b"], [6, 10])
    with pytest.raises(ValueError, match=r"gt\.mat: interval \[8, 10\] of video 'b'"):
        LabelSource.from_config(cfg).load(["a", "b", "c"], [6, 9, 4])
    scipy.io.savemat(str(tmp_path / "toy" / "other.mat"), {"labels": np.zeros(3)})
    with pytest.raises(ValueError, match="no variable 'gt'"):
        LabelSource.from_config(label_cfg(tmp_path, "mat_intervals", "other.mat")).load(["a"], [3])


def test_labels_pixel_masks(tmp_path):
    folder = tmp_path / "toy" / "gt"
    for name, hot in (("Test001", {2, 3}), ("Test002", set())):
        (folder / f"{name}_gt").mkdir(parents=True)
        for k in range(5):
            mask = np.zeros((8, 8), np.uint8)
            if k in hot:
                mask[4, 5] = 255  # one pixel is enough
            cv2.imwrite(str(folder / f"{name}_gt" / f"{k + 1:03d}.bmp"), mask)
    cfg = label_cfg(tmp_path, "pixel_masks", "gt")
    labels = LabelSource.from_config(cfg).load(["Test001", "Test002", "Test003"], [5, 5, 5])
    assert labels["Test001"].tolist() == [0, 0, 1, 1, 0]
    assert labels["Test002"].tolist() == [0] * 5
    assert labels["Test003"] is None
    with pytest.raises(ValueError, match="Test001_gt cover 5 frames but the video has 4"):
        LabelSource.from_config(cfg).load(["Test001"], [4])


def test_unknown_label_format(tmp_path):
    with pytest.raises(ValueError, match="valid choices"):
        LabelSource.from_config(label_cfg(tmp_path, "csv", "x")).load(["a"], [3])
