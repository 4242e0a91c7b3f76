"""detect.py: streaming cubes equal pre_process's, scores equal eval's, intervals, bad input.

Two run directories are made here: `tiny_run`, an untrained tiny hybrid model with made-up
training statistics (instant; for equality and error tests), and `synthetic_run`, a tiny
ML-MemAE-SC (model.type memae, flow reconstruction only) trained for 3 epochs on 600 cubes of the
synthetic dataset's normal videos (about a minute on one CPU core), for the detection tests.
"""

import dataclasses
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from data_paths import PED2

from datasets import CubeDataset
from datasets.cubes import CUBE_ARRAYS, CubeSource
from engine.stages import train_stage1
from inference.detect import detect, detect_video, limit_frames, open_input
from inference.stream_scoring import LiveSmoother
from inference.thresholds import anomalous_intervals, far_threshold
from inference.trained_run import DetectError, load_trained_run
from pre_process import run_preprocess
from pre_process.boxes import BoxExtractor
from pre_process.flow import build_flow_estimator
from pre_process.stream import stream_cubes
from scoring.frame_scores import FrameProtocol, smooth, video_frame_scores
from scoring.statistics import collect_object_scores
from scoring.tracks import TrackSmoothing
from utils.config import load_config

REPO = Path(__file__).resolve().parent.parent

PED2_VIDEO = PED2 / "testing" / "frames" / "01"
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def synthetic_run(tmp_path_factory) -> tuple[Path, Path]:
    """(run directory, synthetic data folder): a tiny memae trained on synthetic normal videos."""
    root = tmp_path_factory.mktemp("synthetic")
    cfg = load_config(
        Path("cfgs/synthetic.yaml"),
        [
            "model.type=memae",
            "model.memae.feature_root=4",
            "model.memae.num_slots=16",
            "stage1.num_epochs=3",
            "stage1.batch_size=32",
            "stage1.lr=0.003",
            "stage1.max_cubes=600",
            "synthetic.num_train_videos=4",
            "synthetic.num_test_videos=1",  # test video 01: a `fast` object
            f"data.root={root / 'data'}",
            f"data.cache_dir={root / 'cache'}",
            f"run_dir={root / 'run'}",
            "device=cpu",
        ],
    )
    run_preprocess(cfg, splits=("training",))
    train_stage1(cfg)
    return root / "run", root / "data" / "synthetic"


def read_video_file(path: Path) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    return frames


# ---------------------------------------------------------------------------------------------
# Streaming equals the offline pipeline


@pytest.mark.skipif(
    not PED2_VIDEO.is_dir(), reason=f"Ped2 data absent ({PED2}; set HF2VAD_DATASETS)"
)
def test_ped2_stream_equals_offline_cubes_and_eval_scores(tiny_run, tmp_path):
    """First 40 frames of Ped2 test video 01: the same boxes, flows and crops as pre_process,
    and the same object and frame scores as eval.py's functions on those cubes."""
    offline_cfg = load_config(
        Path("cfgs/ped2.yaml"),
        [f"data.cache_dir={tmp_path / 'cache'}", "data.videos=['01']", "data.max_frames=40"],
    )
    run_preprocess(offline_cfg, splits=("testing",))
    offline = CubeDataset(CubeSource.from_config(offline_cfg).folder("testing"))

    det = load_trained_run(tiny_run, device="cpu")
    video = limit_frames(open_input(PED2_VIDEO), 40)
    doc = detect_video(det, video, tmp_path / "out", save_intermediate=True, progress=False)
    streamed = CubeDataset(tmp_path / "out" / "intermediate" / "cubes")

    assert len(streamed) == len(offline) > 40
    for name in CUBE_ARRAYS:  # bit-identical: same boxes, same flows, same crops
        stream_array = np.load(streamed.cube_dir / f"{name}.npy")
        assert np.array_equal(stream_array, np.load(offline.cube_dir / f"{name}.npy")), name
    flows = np.load(tmp_path / "cache" / "flows" / "testing" / "01.npy")
    assert np.array_equal(np.load(tmp_path / "out" / "intermediate" / "flows.npy"), flows)

    s_r, s_p, s_kl = collect_object_scores(det.model, offline, 256, 0, det.device, "offline")
    objects = np.genfromtxt(tmp_path / "out" / "objects.csv", delimiter=",", names=True)
    np.testing.assert_allclose(objects["s_r"], s_r, rtol=2e-5)
    np.testing.assert_allclose(objects["s_p"], s_p, rtol=2e-5)
    np.testing.assert_allclose(objects["s_kl"], s_kl, rtol=2e-5)
    raw, smoothed = video_frame_scores(
        det.fuse(s_r, s_p),
        offline.video_idx,
        offline.frame_idx,
        offline.num_frames,
        det.empty_score,
        4,
        det.cfg.eval.smoothing,  # the paper config's: zero-padded medfilt
        17,
        3.0,
    )
    as_array = lambda values: np.array([np.nan if v is None else v for v in values])  # noqa: E731
    np.testing.assert_allclose(as_array(doc["frames"]["raw_score"]), raw[0], rtol=1e-6)
    np.testing.assert_allclose(as_array(doc["frames"]["smoothed_score"]), smoothed[0], rtol=1e-6)
    assert len(read_video_file(tmp_path / "out" / "annotated.mp4")) == 40


def test_stream_lags_one_frame_and_keeps_every_frame():
    """Frame i comes out once frame i+1 has been read (boxes need frames i-1, i, i+1)."""
    cfg = load_config(None)
    rng = np.random.default_rng(0)
    read = []

    def frames():
        for k in range(30):
            frame = rng.integers(0, 30, (48, 64, 3), dtype=np.uint8)
            frame[10:30, 2 * k : 2 * k + 12] = 200  # a square moving right
            read.append(k)
            yield frame

    stream = stream_cubes(
        frames(), BoxExtractor(cfg.preprocess.boxes), build_flow_estimator(cfg.preprocess.flow)
    )
    indices = []
    for item in stream:
        assert len(read) == min(item.index + 2, 30)
        assert item.frame_cubes.shape == (len(item.boxes), 5, 32, 32, 3)
        assert item.flow_cubes.shape == (len(item.boxes), 4, 32, 32, 2)
        indices.append(item.index)
    assert indices == list(range(30))


# ---------------------------------------------------------------------------------------------
# Scores, smoothing, thresholds


@pytest.mark.parametrize(
    "mode,window,length",
    [
        ("median", 17, 60),
        ("median", 5, 7),
        ("gaussian", 17, 50),
        ("none", 17, 10),
        ("median", 17, 6),
    ],
)
def test_live_smoothing_equals_whole_video_smoothing(mode, window, length):
    raw = np.random.default_rng(1).normal(size=length)
    raw[:4] = np.nan
    live = LiveSmoother(mode, window, 3.0)
    out = []
    for i, value in enumerate(raw):
        out += live.push(i, value, payload=i)
        assert len(out) >= i + 1 - live.radius  # bounded delay
    out += live.finish()
    assert [index for index, _, payload in out] == list(range(length))
    values = np.array([v for _, v, _ in out])
    np.testing.assert_allclose(values, smooth(raw, mode, window, 3.0), rtol=1e-12)


def test_anomalous_intervals_frames_and_seconds():
    smoothed = np.array([np.nan, np.nan, 0, 3, 5, 4, 0, 0, 2.5, 2.5])
    intervals = anomalous_intervals(smoothed, 2.0, fps=10)
    assert [(i["start_frame"], i["end_frame"], i["peak_frame"]) for i in intervals] == [
        (3, 5, 4),
        (8, 9, 8),
    ]
    assert intervals[0]["start_s"] == 0.3 and intervals[0]["end_s"] == 0.6
    assert intervals[1]["peak_score"] == 2.5
    assert anomalous_intervals(np.full(5, np.nan), 0.0, fps=10) == []


def test_far_without_training_cubes_uses_the_normal_approximation(tiny_run):
    threshold = far_threshold(load_trained_run(tiny_run, device="cpu"), 0.01)
    assert threshold.method == "normal_approximation"
    assert threshold.value == pytest.approx(2.3263 * 1.1, rel=1e-4)  # w_r + w_p = 1.1


# ---------------------------------------------------------------------------------------------
# Detection with a trained model


def test_synthetic_anomaly_is_found(synthetic_run, tmp_path):
    run, data = synthetic_run
    labels = np.load(data / "testing" / "test_frame_mask" / "01.npy")
    (doc,) = detect(run, [data / "testing" / "frames" / "01"], tmp_path, far=0.01, progress=False)
    assert doc["threshold"]["method"] == "training_frames"
    assert doc["threshold"]["training_far"] <= 0.01
    truth = set(np.flatnonzero(labels))
    found = set()
    for interval in doc["intervals"]:
        found |= set(range(interval["start_frame"], interval["end_frame"] + 1))
    assert len(found & truth) >= 0.5 * len(truth), (doc["intervals"], min(truth), max(truth))
    # a copied run without the training cubes still has the errors cached beside its checkpoint
    copied = shutil.copytree(run, tmp_path / "copied_run")
    det = load_trained_run(copied, overrides=["data.cache_dir=/nonexistent"], device="cpu")
    assert far_threshold(det, 0.01).value == doc["threshold"]["value"]
    smoothed = np.array([np.nan if v is None else v for v in doc["frames"]["smoothed_score"]])
    assert np.nanmean(smoothed[labels == 1]) > np.nanmean(smoothed[labels == 0])
    out = tmp_path / "01"
    for name in ("scores.csv", "scores.json", "objects.csv", "curve.png", "annotated.mp4"):
        assert (out / name).is_file(), name
    assert len((out / "scores.csv").read_text().splitlines()) == 1 + len(labels)
    assert len(read_video_file(out / "annotated.mp4")) == len(labels)
    assert not (out / "intermediate").exists()  # nothing intermediate unless asked


def test_track_smoothing_in_the_stream_equals_eval_protocol(synthetic_run, tmp_path):
    """With eval.track_window on, detect's frame scores equal FrameProtocol over its objects."""
    run, data = synthetic_run
    det = load_trained_run(run, overrides=["eval.track_window=5"], device="cpu")
    video = open_input(data / "testing" / "frames" / "01")
    doc = detect_video(det, video, tmp_path / "out", progress=False)
    objects = np.genfromtxt(tmp_path / "out" / "objects.csv", delimiter=",", names=True)
    frames = objects["frame"].astype(np.int64)
    boxes = np.stack([objects[k] for k in ("x1", "y1", "x2", "y2")], axis=1)
    protocol = FrameProtocol.from_config(det.cfg)
    assert protocol.tracks.window == 5
    raw, smoothed = protocol.frame_scores(
        objects["score"],
        np.zeros(len(frames), np.int64),
        frames,
        [video.num_frames],
        det.empty_score,
        boxes,
    )
    untracked, _ = dataclasses.replace(protocol, tracks=TrackSmoothing()).frame_scores(
        objects["score"],
        np.zeros(len(frames), np.int64),
        frames,
        [video.num_frames],
        det.empty_score,
    )
    as_array = lambda values: np.array([np.nan if v is None else v for v in values])  # noqa: E731
    # objects.csv keeps 6 significant digits
    np.testing.assert_allclose(as_array(doc["frames"]["raw_score"]), raw[0], rtol=1e-5)
    np.testing.assert_allclose(as_array(doc["frames"]["smoothed_score"]), smoothed[0], rtol=1e-5)
    scored = np.isfinite(raw[0])
    assert not np.allclose(raw[0][scored], untracked[0][scored])  # the tracks changed something


def test_video_without_motion_scores_low_and_finite(synthetic_run, tmp_path):
    run, data = synthetic_run
    still = cv2.imread(str(data / "training" / "frames" / "01" / "000.png"))
    path = tmp_path / "still.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, still.shape[1::-1])
    for _ in range(30):
        writer.write(still)
    writer.release()
    (doc,) = detect(run, [path], tmp_path / "out", far=0.01, progress=False)
    scored = np.array(doc["frames"]["raw_score"][4:], dtype=np.float64)
    smoothed = np.array(doc["frames"]["smoothed_score"][4:], dtype=np.float64)
    assert doc["num_objects"] == 0 and doc["fps"] == 10
    assert np.isfinite(scored).all() and np.isfinite(smoothed).all()
    assert np.allclose(scored, doc["scoring"]["empty_frame_score"])
    assert smoothed.max() < doc["threshold"]["value"] and doc["intervals"] == []


def detect_command(args: list[str]) -> subprocess.CompletedProcess:
    """detect.py run as a user runs it."""
    command = [sys.executable, str(REPO / "detect.py"), *args]
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)


@pytest.mark.slow  # a detect.py process
def test_command_line_writes_every_output(tiny_run, synthetic_run, tmp_path):
    _, data = synthetic_run
    folder = data / "testing" / "frames" / "01"
    args = ["--run", str(tiny_run), "--input", str(folder), str(folder), "--out", str(tmp_path)]
    done = detect_command(
        args + ["--max-frames", "12", "--threshold", "0.5", "--fps", "5", "--quiet"]
    )
    assert done.returncode == 0, done.stderr
    for name in ("01", "01_2"):  # the same input twice gets two folders
        doc = json.loads((tmp_path / name / "scores.json").read_text())
        assert doc["num_frames"] == 12 and doc["fps"] == 5
        assert doc["threshold"] == {
            "value": 0.5,
            "method": "absolute",
            "far": None,
            "training_far": None,
            "note": "given on the command line",
        }
        assert len(read_video_file(tmp_path / name / "annotated.mp4")) == 12


# ---------------------------------------------------------------------------------------------
# Bad input


def bad_inputs(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    corrupt = tmp_path / "corrupt.avi"
    corrupt.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, np.uint8).tobytes())
    text = tmp_path / "notes.txt"
    text.write_text("not a video")
    folder = tmp_path / "no_frames"
    folder.mkdir()
    return {
        "missing": (tmp_path / "missing.mp4", "input not found"),
        "empty": (empty, "empty"),
        "corrupt": (corrupt, "cannot open video file|no decodable frames"),
        "unsupported": (text, "unsupported input"),
        "empty folder": (folder, "no frames"),
    }


@pytest.mark.parametrize("kind", ["missing", "empty", "corrupt", "unsupported", "empty folder"])
def test_bad_input_is_a_clear_error(kind, tiny_run, tmp_path):
    path, message = bad_inputs(tmp_path)[kind]
    with pytest.raises(DetectError, match=message) as err:
        detect(tiny_run, [path], tmp_path / "out", progress=False)
    assert str(path) in str(err.value)
    assert not (tmp_path / "out").exists()


@pytest.mark.slow  # one detect.py process per kind
@pytest.mark.parametrize("kind", ["missing", "empty", "corrupt", "unsupported", "empty folder"])
def test_bad_input_is_a_clear_error_on_the_command_line(kind, tiny_run, tmp_path):
    path, message = bad_inputs(tmp_path)[kind]
    done = detect_command(["--run", str(tiny_run), "--input", str(path), "--quiet"])
    assert done.returncode == 2
    assert re.search(message, done.stderr)
    assert not (tmp_path / "out").exists()


def test_run_without_trained_model_is_a_clear_error(tiny_run, tmp_path):
    video = tmp_path / "v.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 10, (64, 48))
    for k in range(8):
        writer.write(np.full((48, 64, 3), 10 * k, np.uint8))
    writer.release()
    with pytest.raises(DetectError, match="run directory not found"):
        detect(tmp_path / "nowhere", [video], progress=False)
    with pytest.raises(DetectError, match="not a training run directory"):
        detect(tmp_path, [video], progress=False)
    untrained = tmp_path / "untrained"
    (untrained / "stage1").mkdir(parents=True)
    (untrained / "stage1" / "config.yaml").write_text(
        (tiny_run / "stage3" / "config.yaml").read_text()
    )
    with pytest.raises(DetectError, match="has no trained model.*stage3/best.pth"):
        detect(untrained, [video], progress=False)
