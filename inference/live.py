"""Live scoring: a camera, a stream URL or a growing file, scored as frames arrive.

    python detect.py --run runs/ped2_cpu --input 0 --far 0.01            # camera 0
    python detect.py --run runs/ped2_cpu --input rtsp://host/stream --jsonl events.jsonl
    python detect.py --run runs/ped2_cpu --input clip.mp4 --live --realtime   # a file, played live

A reader thread (`FrameGrabber`) pulls frames from OpenCV into a buffer of at most
`buffer_frames` frames. When the model falls behind and the buffer is full, the reader drops the
whole buffer at once (the frames are counted and reported) and starts a new *segment*: the model
always sees runs of consecutive frames, as in training, never a sparse sequence whose flows would
be too large. A dropped stream is reopened with growing pauses (`reconnect_delays`); the gap is
recorded. A file being written (`--live`) is read to its current end, then polled for new frames.

Each segment is scored as a video of its own (boxes -> flow -> cubes -> model, as detect does): its
first eval.drop_first frames are not scored, and the track and median filters run within the
segment, so a frame's smoothed score is final `track_window // 2 + window // 2` frames later.
Outputs (`LiveOutputs`): one JSON line per frame as soon as its smoothed score is final (capture
time, raw and smoothed score, decision, latency = seconds from capture to this line), an `interval`
line when an anomalous stretch closes, `skipped` and `gap` lines, optional rolling MP4 segments of
the annotated video, and live_summary.json at the end. Ctrl-C or SIGTERM stops the reader, scores
what was read, closes every interval and file, and writes the summary.
"""

from __future__ import annotations

import json
import queue
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np

from inference.detect import threshold_for
from inference.outputs import VideoAnnotator
from inference.stream_scoring import LiveSmoother, score_stream
from inference.trained_run import DetectError, TrainedRun, load_trained_run
from scoring.frame_scores import FrameProtocol
from scoring.tracks import LiveTracks
from utils.io import write_json

RECONNECT_DELAYS = (0.5, 1.0, 2.0, 4.0, 8.0)  # seconds between attempts; the last one repeats


def live_source(text: str) -> int | str:
    """A camera index ("0"), a stream URL or a file path, as OpenCV opens it."""
    return int(text) if text.isdigit() else text


def is_live_input(text: str) -> bool:
    """Camera indices and stream URLs are always live (files only with --live)."""
    return text.isdigit() or "://" in text


@dataclass
class Captured:
    """One frame as read: RGB uint8 [H, W, 3], its number among all frames read, its capture
    time (seconds, time.time()) and the segment it belongs to."""

    frame: np.ndarray
    number: int
    time: float
    segment: int


@dataclass
class GrabberStats:
    read: int = 0
    skipped: int = 0
    segments: int = 0
    gaps: list[dict] = field(default_factory=list)
    skips: list[dict] = field(default_factory=list)
    reported: tuple[int, int] = (0, 0)  # skips and gaps already written as lines


class FrameGrabber:
    """Reads `source` on a thread into a bounded buffer (see the module docstring).

    realtime: pace a file at its frame rate (a stand-in for a camera). follow: at the end of a
    file, wait for more frames (a growing file) instead of ending. max_reconnects: attempts
    after a failure before giving up (None = forever for cameras and streams; files end).
    """

    END = object()

    def __init__(
        self,
        source: int | str,
        buffer_frames: int = 16,
        realtime: bool = False,
        follow: bool = False,
        reconnect_delays: tuple[float, ...] = RECONNECT_DELAYS,
        max_reconnects: int | None = None,
        open_capture: Callable = cv2.VideoCapture,
        poll_seconds: float = 0.2,
    ) -> None:
        self.source, self.realtime, self.follow = source, realtime, follow
        self.delays, self.max_reconnects = reconnect_delays, max_reconnects
        self.open_capture, self.poll_seconds = open_capture, poll_seconds
        self.is_file = isinstance(source, str) and "://" not in source
        self.buffer: queue.Queue = queue.Queue(maxsize=max(1, buffer_frames))
        self.stats = GrabberStats()
        self.stop_event = threading.Event()
        self.fps = 0.0
        self.segment = 0
        self.taken = -1  # number of the last frame the consumer took
        self.started = False
        self._thread = threading.Thread(target=self._run, name="frame-grabber", daemon=True)

    # -- reader thread
    def start(self) -> FrameGrabber:
        capture = self._open()
        if capture is None:
            raise DetectError(f"cannot open live input {self.source!r}")
        self._capture = capture
        self._thread.start()
        self.started = True
        return self

    def _open(self):
        capture = self.open_capture(self.source)
        if not capture.isOpened():
            return None
        fps = float(capture.get(cv2.CAP_PROP_FPS) or 0.0)
        self.fps = fps if 0 < fps < 1000 else self.fps or 25.0
        return capture

    def _run(self) -> None:
        capture, position = self._capture, 0
        next_due = time.monotonic()
        try:
            while not self.stop_event.is_set():
                ok, frame = capture.read()
                if not ok:
                    capture.release()
                    capture = self._recover(position)
                    if capture is None:
                        break
                    continue
                position += 1
                if self.realtime:
                    next_due += 1.0 / self.fps
                    time.sleep(max(0.0, next_due - time.monotonic()))
                self._put(frame[..., ::-1].copy())
        finally:
            if capture is not None:
                capture.release()
            self._put_end()

    def _recover(self, position: int):
        """After a failed read: a file ends (or is polled with follow); a camera or stream is
        reopened with growing pauses, the gap recorded. Returns the new capture or None."""
        if self.is_file and not self.follow:
            return None
        started, attempt = time.time(), 0
        while not self.stop_event.is_set():
            if self.max_reconnects is not None and attempt >= self.max_reconnects:
                break
            pause = (
                self.poll_seconds
                if self.is_file
                else self.delays[min(attempt, len(self.delays) - 1)]
            )
            self.stop_event.wait(pause)
            attempt += 1
            capture = self._open()
            if capture is None:
                continue
            if self.is_file:  # a growing file: continue after the frames already read
                capture.set(cv2.CAP_PROP_POS_FRAMES, position)
                ok, frame = capture.read()
                if not ok:
                    capture.release()
                    continue
                self._put(frame[..., ::-1].copy())
                return capture
            gap = {"start": started, "end": time.time(), "attempts": attempt}
            self.stats.gaps.append(gap)
            self.segment += 1  # the frames after a gap do not continue the ones before it
            return capture
        if not self.is_file:
            self.stats.gaps.append({"start": started, "end": time.time(), "attempts": attempt})
        return None

    def _put(self, frame: np.ndarray) -> None:
        item = Captured(frame, self.stats.read, time.time(), self.segment)
        self.stats.read += 1
        try:
            self.buffer.put_nowait(item)
        except queue.Full:
            # the consumer sees the jump in frame numbers and opens a new segment there
            self.stats.skipped += self._drain()
            self.buffer.put_nowait(item)

    def _drain(self) -> int:
        count = 0
        while True:
            try:
                self.buffer.get_nowait()
                count += 1
            except queue.Empty:
                return count

    def _put_end(self) -> None:
        self.buffer.put(self.END)  # waits for the consumer: every frame read gets scored

    # -- consumer side
    def stop(self) -> None:
        self.stop_event.set()

    def join(self, timeout: float = 10.0) -> None:
        self._thread.join(timeout)

    def segments(self) -> Iterator[Iterator[Captured]]:
        """The frames read, as one iterator of consecutive frames per segment. A segment ends at a
        gap (a reopened source) or where the reader dropped frames; the consumer alone decides
        this, from the frame numbers, so the skips it records match the segments it yields."""
        pending: list[Captured] = []
        while True:
            first = pending.pop() if pending else self.buffer.get()
            if first is self.END:
                return
            dropped = first.number - self.taken - 1
            if dropped > 0:
                self.stats.skips.append({"time": first.time, "frames": dropped})
            self.stats.segments += 1
            yield self._segment(first, pending)

    def _segment(self, first: Captured, pending: list) -> Iterator[Captured]:
        self.taken = first.number
        yield first
        while True:
            item = self.buffer.get()
            if item is self.END or item.segment != first.segment or item.number != self.taken + 1:
                pending.append(item)
                return
            self.taken = item.number
            yield item


class LiveOutputs:
    """JSON lines (a file or standard output), intervals as they close, rolling MP4 segments."""

    def __init__(
        self,
        out_dir: Path,
        jsonl: str | None,
        fps: float,
        frame_size,
        colour_scale,
        threshold: float | None,
        segment_seconds: float = 0.0,
    ) -> None:
        self.out_dir, self.fps, self.frame_size = out_dir, fps, frame_size
        self.colour_scale, self.threshold = colour_scale, threshold
        self.segment_frames = int(round(segment_seconds * fps)) if segment_seconds > 0 else 0
        out_dir.mkdir(parents=True, exist_ok=True)
        if jsonl in (None, "-"):
            self.handle, self._own = sys.stdout, False
        else:
            self.handle, self._own = open(jsonl, "w"), True
        self.open_interval: dict | None = None
        self.intervals: list[dict] = []
        self.latencies: list[float] = []
        self.scored = 0
        self._video: VideoAnnotator | None = None
        self._video_frames = 0
        self._video_count = 0

    def line(self, doc: dict) -> None:
        self.handle.write(json.dumps(doc) + "\n")
        self.handle.flush()

    def frame(
        self, item: Captured, raw: float, smoothed: float, boxes, scores, behind: int
    ) -> None:
        latency = time.time() - item.time
        anomalous = None
        if self.threshold is not None and np.isfinite(smoothed):
            anomalous = bool(smoothed > self.threshold)
            self._track(item, smoothed, anomalous)
        if np.isfinite(smoothed):
            self.scored += 1
            self.latencies.append(latency)
        self.line(
            {
                "frame": item.number,
                "captured": _iso(item.time),
                "raw_score": raw if np.isfinite(raw) else None,
                "smoothed_score": smoothed if np.isfinite(smoothed) else None,
                "anomalous": anomalous,
                "num_objects": int(len(boxes)),
                "latency_s": round(latency, 4),
                "behind_frames": behind,
            }
        )
        if self.segment_frames:
            self._write_video(item, boxes, scores, raw, smoothed)

    def _track(self, item: Captured, smoothed: float, anomalous: bool) -> None:
        if not anomalous:
            self.close_interval()
            return
        if self.open_interval is None:
            self.open_interval = {"first_frame": item.number, "start": item.time, "peak": smoothed}
        self.open_interval["peak"] = max(self.open_interval["peak"], smoothed)
        self.open_interval["last"] = item

    def close_interval(self) -> None:
        """Write the open anomalous interval (at its end, a gap, a skip or shutdown)."""
        if self.open_interval is None:
            return
        last = self.open_interval.pop("last")
        doc = {
            "event": "interval",
            "first_frame": self.open_interval["first_frame"],
            "last_frame": last.number,
            "start": _iso(self.open_interval["start"]),
            "end": _iso(last.time),
            "peak_score": round(float(self.open_interval["peak"]), 4),
        }
        self.intervals.append(doc)
        self.line(doc)
        self.open_interval = None

    def _write_video(self, item, boxes, scores, raw, smoothed) -> None:
        if self._video is None or self._video_frames >= self.segment_frames:
            self._close_video()
            self._video_count += 1
            path = self.out_dir / "segments" / f"segment_{self._video_count:05d}.mp4"
            path.parent.mkdir(parents=True, exist_ok=True)
            self._video = VideoAnnotator(path, self.fps, self.frame_size, self.colour_scale)
            self._video_frames = 0
        self._video.write(item.frame, item.number, boxes, scores, raw, smoothed, self.threshold)
        self._video_frames += 1

    def _close_video(self) -> None:
        if self._video is not None:
            self._video.__exit__(None, None, None)
            self._video = None

    def close(self) -> None:
        self.close_interval()
        self._close_video()
        if self._own:
            self.handle.close()


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds")


def _score_segment(
    det: TrainedRun, frames: Iterator[Captured], outputs: LiveOutputs, backlog: Callable[[], int]
) -> None:
    """One segment through boxes -> flow -> cubes -> model, each frame's line written as soon as
    its smoothed score is final."""
    cfg = det.cfg
    captured: dict[int, Captured] = {}

    def images() -> Iterator[np.ndarray]:
        for k, item in enumerate(frames):
            captured[k] = item
            yield item.frame

    stream = det.stream(images())
    novelty = det.appearance_novelty if det.appearance is not None else None
    tracks = LiveTracks(FrameProtocol.from_config(cfg).tracks)
    live = LiveSmoother(cfg.eval.smoothing, cfg.eval.window, cfg.eval.sigma)

    def release(ready) -> None:
        for index, smoothed, (raw, boxes, scores) in ready:
            outputs.frame(captured.pop(index), raw, smoothed, boxes, scores, backlog())

    def tracked(ready) -> None:  # object scores final along their tracks -> frame scores
        for index, scores, boxes in ready:
            raw = float(scores.max()) if len(scores) else det.empty_score
            raw = float("nan") if index < cfg.eval.drop_first else raw
            release(live.push(index, raw, (raw, boxes, scores)))

    # one frame per model batch: a live stream wants its score now, not after a full batch
    for item in score_stream(det.model, stream, det.device, cfg.eval.batch_size, 1, novelty):
        scores = det.fuse(
            item.s_r,
            item.s_p,
            item.boxes,
            captured[item.index].frame.shape[:2],
            item.s_a,
            item.s_kl,
        )
        tracked(tracks.push(item.index, item.boxes, scores, item.boxes))
    tracked(tracks.finish())
    release(live.finish())


def run_live(
    det: TrainedRun,
    grabber: FrameGrabber,
    out_dir: Path,
    jsonl: str | None = None,
    threshold: float | None = None,
    segment_seconds: float = 0.0,
    max_seconds: float = 0.0,
    handle_signals: bool = True,
) -> dict:
    """Score `grabber`'s frames until the source ends, `max_seconds` pass, or Ctrl-C / SIGTERM;
    returns (and writes to out_dir/live_summary.json) the summary."""
    stop = grabber.stop
    previous = {}
    if handle_signals and threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, lambda *_: stop())
    timer = threading.Timer(max_seconds, stop) if max_seconds > 0 else None
    tic = time.time()
    colour_scale = threshold if threshold else 3.0 * sum(map(abs, det.weights))
    outputs = None
    try:
        grabber.start()
        if timer is not None:
            timer.start()
        for number, segment in enumerate(grabber.segments()):
            first = next(segment, None)
            if first is None:
                continue
            if outputs is None:
                outputs = LiveOutputs(
                    out_dir,
                    jsonl,
                    grabber.fps,
                    first.frame.shape[:2],
                    colour_scale,
                    threshold,
                    segment_seconds,
                )
            if number > 0:  # frames skipped or a gap before this segment
                outputs.close_interval()
            _report_breaks(outputs, grabber.stats)
            _score_segment(det, _chain(first, segment), outputs, grabber.buffer.qsize)
    finally:
        if timer is not None:
            timer.cancel()
        grabber.stop()
        if grabber.started:
            grabber.join()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if outputs is not None:
            _report_breaks(outputs, grabber.stats)
            outputs.close()
    seconds = time.time() - tic
    stats = grabber.stats
    latencies = np.asarray(outputs.latencies if outputs else [], dtype=np.float64)
    summary = {
        "source": str(grabber.source),
        "seconds": round(seconds, 3),
        "frames_read": stats.read,
        "frames_scored": outputs.scored if outputs else 0,
        "frames_skipped": stats.skipped,
        "segments": stats.segments,
        "gaps": [
            {"seconds": round(g["end"] - g["start"], 3), "attempts": g["attempts"]}
            for g in stats.gaps
        ],
        "intervals": outputs.intervals if outputs else [],
        "frames_per_second": round(stats.read / seconds, 2) if seconds > 0 else None,
        "source_fps": grabber.fps,
        "latency_s": _quantiles(latencies),
    }
    write_json(out_dir / "live_summary.json", summary)
    return summary


def _report_breaks(outputs: LiveOutputs, stats: GrabberStats) -> None:
    """`skipped` and `gap` lines for the breaks not reported yet."""
    skips, gaps = stats.reported
    for skip in stats.skips[skips:]:
        outputs.line({"event": "skipped", "time": _iso(skip["time"]), "frames": skip["frames"]})
    for gap in stats.gaps[gaps:]:
        seconds = round(gap["end"] - gap["start"], 3)
        start, end = _iso(gap["start"]), _iso(gap["end"])
        outputs.line(
            {
                "event": "gap",
                "start": start,
                "end": end,
                "seconds": seconds,
                "attempts": gap["attempts"],
            }
        )
    stats.reported = (len(stats.skips), len(stats.gaps))


def _chain(first: Captured, rest: Iterator[Captured]) -> Iterator[Captured]:
    yield first
    yield from rest


def _quantiles(values: np.ndarray) -> dict:
    if not values.size:
        return {"median": None, "p95": None, "max": None}
    return {
        "median": round(float(np.median(values)), 4),
        "p95": round(float(np.quantile(values, 0.95)), 4),
        "max": round(float(values.max()), 4),
    }


def detect_live(
    run_dir: str | Path,
    source: str,
    out_dir: str | Path | None = None,
    threshold: float | None = None,
    far: float | None = None,
    device: str | None = None,
    overrides=(),
    jsonl: str | None = None,
    realtime: bool = False,
    follow: bool = False,
    buffer_frames: int = 16,
    segment_seconds: float = 0.0,
    max_seconds: float = 0.0,
) -> dict:
    """Load the run and score a live source (see the module docstring); returns the summary."""
    if not is_live_input(source) and not Path(source).exists():
        raise DetectError(f"input not found: {source}")
    det = load_trained_run(run_dir, overrides, device)
    chosen = threshold_for(det, threshold, far)
    grabber = FrameGrabber(live_source(source), buffer_frames, realtime=realtime, follow=follow)
    out_dir = Path(out_dir) if out_dir is not None else Path(run_dir) / "live"
    return run_live(
        det,
        grabber,
        out_dir,
        jsonl,
        None if chosen is None else chosen.value,
        segment_seconds,
        max_seconds,
    )
