"""Live scoring (inference/live.py) without a camera: a local video read at its frame rate stands
in for a stream; a scripted capture stands in for a stream that drops."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from inference.live import FrameGrabber, run_live
from inference.trained_run import load_trained_run

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.usefixtures("one_thread")


def write_video(path: Path, num_frames: int, fps: float = 25.0, scale: int = 1) -> Path:
    """A (64 scale)x(48 scale) mp4 with two bright squares walking across a dark background."""
    size = (64 * scale, 48 * scale)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    for i in range(num_frames):
        frame = np.full((size[1], size[0], 3), 30, np.uint8)
        for k, y in enumerate((8 * scale, 28 * scale)):
            x = (3 * scale + i + 9 * k * scale) % (50 * scale)
            frame[y : y + 12 * scale, x : x + 12 * scale] = 220
        writer.write(frame)
    writer.release()
    return path


def read_lines(path: Path) -> tuple[list[dict], list[dict]]:
    """(frame lines, event lines) of a JSON-lines output."""
    docs = [json.loads(line) for line in path.read_text().splitlines()]
    return [d for d in docs if "event" not in d], [d for d in docs if "event" in d]


def test_realtime_stream_is_scored_whole_and_in_order(tiny_run, tmp_path):
    video = write_video(tmp_path / "v.mp4", 40)
    det = load_trained_run(tiny_run, device="cpu")
    grabber = FrameGrabber(str(video), buffer_frames=64, realtime=True)
    tic = time.time()
    summary = run_live(
        det, grabber, tmp_path / "out", str(tmp_path / "o.jsonl"), None, handle_signals=False
    )
    assert time.time() - tic >= 40 / 25 * 0.9  # read at the file's frame rate
    frames, events = read_lines(tmp_path / "o.jsonl")
    assert [f["frame"] for f in frames] == list(range(40)) and events == []
    assert summary["frames_read"] == 40 and summary["frames_skipped"] == 0
    assert summary["segments"] == 1 and summary["source_fps"] == pytest.approx(25.0)
    scored = [f for f in frames if f["smoothed_score"] is not None]
    assert len(scored) == summary["frames_scored"] == 40 - det.cfg.eval.drop_first
    latencies = [f["latency_s"] for f in scored]
    assert min(latencies) >= 0
    assert summary["latency_s"]["median"] == pytest.approx(np.median(latencies), abs=1e-3)
    saved = json.loads((tmp_path / "out" / "live_summary.json").read_text())
    assert saved == summary


def test_a_slow_model_skips_frames_and_never_queues_more(tiny_run, tmp_path):
    """Read as fast as the file decodes: the model cannot keep up, so whole buffers are skipped
    (counted); every frame read is either scored in a segment of consecutive frames or skipped."""
    video = write_video(tmp_path / "v.mp4", 120)
    det = load_trained_run(tiny_run, device="cpu")
    grabber = FrameGrabber(str(video), buffer_frames=3)
    summary = run_live(
        det, grabber, tmp_path / "out", str(tmp_path / "o.jsonl"), None, handle_signals=False
    )
    frames, events = read_lines(tmp_path / "o.jsonl")
    skipped = [e for e in events if e["event"] == "skipped"]
    dropped_before_first = frames[0]["frame"] > 0  # a skip before the first segment, if any
    assert summary["frames_skipped"] > 0
    assert len(skipped) == summary["segments"] - 1 + dropped_before_first
    assert sum(e["frames"] for e in skipped) == summary["frames_skipped"]
    assert len(frames) + summary["frames_skipped"] == summary["frames_read"] == 120
    numbers = [f["frame"] for f in frames]
    assert numbers == sorted(numbers) and len(set(numbers)) == len(numbers)
    jumps = sum(b != a + 1 for a, b in zip(numbers, numbers[1:]))
    assert jumps == summary["segments"] - 1  # consecutive frames within each segment
    assert max(f["behind_frames"] for f in frames) <= 3


def test_stop_closes_intervals_and_flushes_every_output(tiny_run, tmp_path):
    video = write_video(tmp_path / "v.mp4", 250)
    det = load_trained_run(tiny_run, device="cpu")
    grabber = FrameGrabber(str(video), buffer_frames=64, realtime=True)
    summary = run_live(
        det,
        grabber,
        tmp_path / "out",
        str(tmp_path / "o.jsonl"),
        threshold=-1e9,
        segment_seconds=0.4,
        max_seconds=1.5,
        handle_signals=False,
    )
    assert 20 <= summary["frames_read"] < 250  # stopped early, after about 1.5 s of frames
    frames, events = read_lines(tmp_path / "o.jsonl")
    assert len(frames) == summary["frames_read"]  # every frame read was scored before the end
    (interval,) = [e for e in events if e["event"] == "interval"]  # closed at the stop
    scored = [f for f in frames if f["anomalous"]]
    assert interval["first_frame"] == scored[0]["frame"]
    assert interval["last_frame"] == scored[-1]["frame"]
    segments = sorted((tmp_path / "out" / "segments").glob("segment_*.mp4"))
    assert len(segments) >= 2
    assert sum(int(cv2.VideoCapture(str(p)).get(cv2.CAP_PROP_FRAME_COUNT)) for p in segments) == (
        len(frames)
    )


class ScriptedCapture:
    """A stream that delivers `frames` frames and then fails; `opens` says which attempts to
    open it succeed."""

    def __init__(self, script: list, frames: int = 10):
        self.ok = script.pop(0)
        self.left = frames if self.ok else 0

    def isOpened(self):  # noqa: N802 (OpenCV's name)
        return self.ok

    def get(self, prop):
        return 25.0

    def set(self, prop, value):
        return True

    def read(self):
        if self.left <= 0:
            return False, None
        self.left -= 1
        return True, np.full((48, 64, 3), 30, np.uint8)

    def release(self):
        pass


def test_a_dropped_stream_is_reopened_and_the_gap_recorded(tiny_run, tmp_path):
    script = [True, False, True, False, False]  # open, drop, one failed reopen, reopen, give up
    grabber = FrameGrabber(
        "rtsp://camera.invalid/stream",
        buffer_frames=64,
        reconnect_delays=(0.01, 0.02),
        max_reconnects=2,
        open_capture=lambda source: ScriptedCapture(script),
    )
    det = load_trained_run(tiny_run, device="cpu")
    summary = run_live(
        det, grabber, tmp_path / "out", str(tmp_path / "o.jsonl"), None, handle_signals=False
    )
    frames, events = read_lines(tmp_path / "o.jsonl")
    gaps = [e for e in events if e["event"] == "gap"]
    assert summary["frames_read"] == len(frames) == 20 and summary["segments"] == 2
    assert [g["attempts"] for g in summary["gaps"]] == [2, 2]  # reopened; then given up
    assert len(gaps) == 2 and gaps[0]["seconds"] >= 0.02


@pytest.mark.slow  # a detect.py process
def test_sigterm_is_a_clean_stop(tiny_run, tmp_path):
    video = write_video(tmp_path / "v.mp4", 500)
    out = tmp_path / "out"
    command = [
        sys.executable,
        str(REPO / "detect.py"),
        "--run",
        str(tiny_run),
        "--input",
        str(video),
        "--live",
        "--realtime",
        "--out",
        str(out),
        "--jsonl",
        str(tmp_path / "o.jsonl"),
        "--threads",
        "1",
    ]
    process = subprocess.Popen(command, cwd=REPO, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while time.time() < deadline:
        lines = (
            (tmp_path / "o.jsonl").read_text().splitlines()
            if (tmp_path / "o.jsonl").exists()
            else []
        )
        if len(lines) >= 10:
            break
        time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    summary = json.loads((out / "live_summary.json").read_text())
    frames, _ = read_lines(tmp_path / "o.jsonl")
    assert 10 <= summary["frames_read"] < 500 and len(frames) == summary["frames_read"]
