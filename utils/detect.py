"""Score any video with a trained run: streaming boxes -> flow -> cubes -> model -> scores.

    python detect.py --run runs/ped2 --input my_video.mp4 frames_folder/ [--far 0.01]

Everything the pre-processing and the model need comes from the run directory: its saved config
(the first of `config.yaml`, `eval/config.yaml`, `stage3/`, `stage2/`, `stage1/config.yaml`), the
checkpoint that eval.py would use (`eval.checkpoint`) and the training statistics saved beside it
(`<ckpt>.train_stats.json`; computed from the training cubes when missing and the cubes exist).

Scores follow eval.py exactly (SPEC 6): per object S_r and S_p, z-normalised with the training
statistics and fused with eval.w_r / eval.w_p; a frame's raw score is the maximum over its objects
(a frame without objects gets the score of a zero-error object); the first eval.drop_first frames
are not scored; the rest is smoothed with eval.smoothing. The object scores equal eval.py's for
the same frames (tests/test_detect.py checks it).

Memory does not grow with the video's length except for a few numbers per frame: the stream holds
6 frames and 5 flows (pre_process/stream.py), frames wait with their cubes until eval.batch_size
cubes are pending (at most eval.batch_size frames or 256 MB of frames), and the annotated video is
written with a delay of the smoothing radius (8 frames for a median of 17), which is when a
frame's smoothed score is final, so the video shows the same smoothed score as scores.csv.

Thresholds (optional): `--threshold X` on the smoothed score, or `--far F`: the smoothed score
that a fraction F of the *training* frames exceeds, with the same scoring protocol (one pass of
the model over the training cubes, which eval.py already made and cached as
<ckpt>.train_object_scores.npz beside the checkpoint). The training
frames were seen in training, so expect more false alarms than F on new normal footage. Without
the training cubes (a run directory copied elsewhere), `--far` falls back to a normal
approximation per object: threshold = z(1 - F) * (|w_r| + |w_p|), the quantile of a fused score
whose two z-scored terms are standard normal and fully correlated; this ignores the maximum over
objects and the smoothing, so it is a rough guide only (the output says which was used).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np
import torch
from scipy.stats import norm
from tqdm import tqdm

from datasets.cubes import cube_dir
from datasets.frames import VIDEO_EXTS, Video, open_video
from eval import (
    eval_checkpoint_path,
    prepare_scoring_model,
    score_weights,
    stats_identity,
    stats_path,
    training_statistics,
)
from eval import training_object_errors as eval_training_object_errors
from models import build_model, object_scores
from pre_process.boxes import BoxExtractor
from pre_process.flow import build_flow_estimator
from pre_process.stream import StreamFrame, stream_cubes
from utils.checkpoint import checkpoint_identity, load_checkpoint, restore_model
from utils.config import Config, load_config
from utils.detect_outputs import (
    IntermediateWriter,
    ObjectsCsv,
    VideoAnnotator,
    plot_score_curve,
    streamed_file,
    write_frame_csv,
)
from utils.io import read_json, write_json
from utils.misc import get_logger, resolve_device
from utils.scoring import empty_frame_score, fuse_scores, smooth, video_frame_scores

FORMAT = "hf2vad-detect-1"
CONFIG_CANDIDATES = (
    "config.yaml",
    "eval/config.yaml",
    "stage3/config.yaml",
    "stage2/config.yaml",
    "stage1/config.yaml",
)
DEFAULT_FOLDER_FPS = 25.0  # frames per second assumed for folders of images (--fps to change)
FRAME_BUFFER_BYTES = 256 * 2**20  # frames held while their cubes wait for a model batch


class DetectError(ValueError):
    """An input, run directory or option that detect cannot use; the message names it."""


# ---------------------------------------------------------------------------------------------
# The trained run


@dataclass
class Detector:
    """A trained run ready to score: config, model in test mode, training statistics, tools."""

    cfg: Config
    model: torch.nn.Module
    stats: dict
    ckpt: dict
    ckpt_path: Path
    device: torch.device
    boxes: BoxExtractor
    flow: object

    @property
    def weights(self) -> tuple[float, float]:
        """(w_r, w_p) of eval.py's main score (a missing branch has weight 0)."""
        return next(iter(score_weights(self.cfg).values()))

    def fuse(self, s_r: np.ndarray, s_p: np.ndarray) -> np.ndarray:
        return fuse_scores(s_r, s_p, self.stats, *self.weights)

    @property
    def empty_score(self) -> float:
        return empty_frame_score(self.stats, *self.weights)


def run_config_path(run_dir: Path) -> Path:
    """The saved config of a run directory (see CONFIG_CANDIDATES)."""
    if not run_dir.is_dir():
        raise DetectError(f"run directory not found: {run_dir}")
    for name in CONFIG_CANDIDATES:
        if (run_dir / name).is_file():
            return run_dir / name
    raise DetectError(
        f"{run_dir} is not a training run directory: none of {', '.join(CONFIG_CANDIDATES)} "
        f"exists (train one with: python run_pipeline.py --cfg <config>)"
    )


def load_detector(run_dir: str | Path, overrides: Iterable[str] = (), device: str | None = None):
    """The run's model, statistics and pre-processing tools. `overrides` are dotted key=value
    settings on top of the saved config (eval.* for instance; settings the checkpoint depends
    on are checked against it)."""
    run_dir = Path(run_dir)
    cfg = load_config(run_config_path(run_dir), overrides)
    cfg.run_dir = str(run_dir)  # the folder may have moved since training
    if device is not None:
        cfg.device = device
    device = resolve_device(cfg.device)
    ckpt_path = eval_checkpoint_path(cfg)
    if not ckpt_path.is_file():
        raise DetectError(
            f"run directory {run_dir} has no trained model: {ckpt_path} is missing "
            f"(eval.checkpoint={cfg.eval.checkpoint}; finish training with "
            f"python run_pipeline.py --cfg {run_config_path(run_dir)})"
        )
    ckpt = load_checkpoint(ckpt_path, cfg, map_location=device)
    model = build_model(cfg.model)
    restore_model(model, ckpt, ckpt_path)
    model = prepare_scoring_model(cfg, model, device)
    stats = _training_stats(cfg, model, ckpt, ckpt_path, device)
    boxes = BoxExtractor(cfg.preprocess.boxes, device)
    flow = build_flow_estimator(cfg.preprocess.flow, device)
    return Detector(cfg, model, stats, ckpt, ckpt_path, device, boxes, flow)


def _has_training_cubes(cfg) -> bool:
    return (cube_dir(cfg, cfg.data.train_split) / "manifest.json").is_file()


def _training_stats(cfg, model, ckpt, ckpt_path: Path, device) -> dict:
    """The saved training statistics of the checkpoint; computed when missing and possible."""
    path = stats_path(cfg, ckpt_path)
    if path.is_file() and read_json(path).get("checkpoint") == stats_identity(cfg, ckpt, device):
        return read_json(path)
    if _has_training_cubes(cfg):
        return training_statistics(cfg, model, ckpt, ckpt_path, device)
    raise DetectError(
        f"no training statistics for {ckpt_path}: {path} is missing or belongs to another "
        f"checkpoint, and the training cubes to compute them are not in "
        f"{cube_dir(cfg, cfg.data.train_split)} (run eval.py on the run first)"
    )


# ---------------------------------------------------------------------------------------------
# Thresholds


@dataclass
class Threshold:
    """A threshold on the smoothed frame score and how it was chosen."""

    value: float
    method: str  # absolute | training_frames | normal_approximation
    far: float | None = None
    training_far: float | None = None  # the share of training frames above it (training_frames)
    note: str = ""

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def absolute_threshold(value: float) -> Threshold:
    if not np.isfinite(value):
        raise DetectError(f"--threshold must be a finite number, got {value}")
    return Threshold(float(value), "absolute", note="given on the command line")


def far_threshold(det: Detector, far: float) -> Threshold:
    """The smoothed score exceeded by a fraction `far` of the training frames (or, without the
    training cubes, the normal approximation of the module docstring)."""
    if not 0 < far < 1:
        raise DetectError(f"--far must be a false-alarm rate strictly between 0 and 1, got {far}")
    if not _has_training_cubes(det.cfg):
        w_r, w_p = det.weights
        value = float(norm.ppf(1 - far) * (abs(w_r) + abs(w_p)))
        note = (
            "training cubes not found: per-object normal approximation z(1-far)*(|w_r|+|w_p|), "
            "ignoring the maximum over objects and the smoothing (rough)"
        )
        return Threshold(value, "normal_approximation", far, note=note)
    scores = training_frame_scores(det)
    value = float(np.quantile(scores, 1 - far, method="higher"))
    return Threshold(
        value,
        "training_frames",
        far,
        training_far=float(np.mean(scores > value)),
        note=f"quantile of the smoothed scores of {len(scores)} training frames (seen in "
        "training: expect more false alarms on new normal footage)",
    )


def training_frame_scores(det: Detector) -> np.ndarray:
    """Smoothed frame scores of every scored training frame, with eval's protocol."""
    cfg = det.cfg
    objects = training_object_errors(det)
    _, smoothed = video_frame_scores(
        det.fuse(objects["s_r"], objects["s_p"]),
        objects["video_idx"],
        objects["frame_idx"],
        [int(n) for n in objects["num_frames"]],
        det.empty_score,
        cfg.eval.drop_first,
        cfg.eval.smoothing,
        cfg.eval.window,
        cfg.eval.sigma,
    )
    scores = np.concatenate(smoothed)
    return scores[np.isfinite(scores)]


def training_object_errors(det: Detector) -> dict[str, np.ndarray]:
    """Per-object errors of every training cube (cached by eval's training statistics)."""
    return eval_training_object_errors(det.cfg, det.model, det.ckpt, det.ckpt_path, det.device)


def anomalous_intervals(smoothed: np.ndarray, threshold: float, fps: float) -> list[dict]:
    """Runs of frames whose smoothed score exceeds `threshold`: first and last frame (inclusive),
    the peak, and the same in seconds (end_s is the end of the last frame)."""
    above = np.concatenate([[False], np.nan_to_num(smoothed, nan=-np.inf) > threshold, [False]])
    edges = np.flatnonzero(np.diff(above.astype(np.int8)))
    intervals = []
    for start, stop in zip(edges[::2], edges[1::2]):
        peak = int(start + np.argmax(smoothed[start:stop]))
        intervals.append(
            {
                "start_frame": int(start),
                "end_frame": int(stop - 1),
                "peak_frame": peak,
                "peak_score": float(smoothed[peak]),
                "start_s": round(start / fps, 3),
                "end_s": round(stop / fps, 3),
                "peak_s": round(peak / fps, 3),
            }
        )
    return intervals


# ---------------------------------------------------------------------------------------------
# Streaming scores


class ScoredFrame(NamedTuple):
    """A frame with the errors of its K objects."""

    index: int
    frame: np.ndarray  # RGB uint8 [H, W, 3]
    boxes: np.ndarray  # float32 [K, 4]
    s_r: np.ndarray  # float64 [K]
    s_p: np.ndarray  # float64 [K]


@torch.inference_mode()
def cube_errors(model, frame_cubes, flow_cubes, device, batch_size: int):
    """(S_r, S_p) float64 [N] of cubes in the on-disk layout (uint8 [N, 5, s, s, 3] and float32
    [N, 4, s, s, 2]), converted as `datasets.CubeDataset` does, in batches of `batch_size`."""
    s_r, s_p = [], []
    for start in range(0, len(frame_cubes), batch_size):
        frames = torch.from_numpy(frame_cubes[start : start + batch_size]).to(device)
        frames = frames.permute(0, 1, 4, 2, 3).float().div_(255.0).contiguous()
        flows = torch.from_numpy(flow_cubes[start : start + batch_size]).to(device)
        r, p = object_scores(model(frames, flows.permute(0, 1, 4, 2, 3).contiguous()))
        s_r.append(r.double().cpu().numpy())
        s_p.append(p.double().cpu().numpy())
    if not s_r:
        return np.zeros(0), np.zeros(0)
    return np.concatenate(s_r), np.concatenate(s_p)


def score_stream(
    model, stream: Iterable[StreamFrame], device, batch_size: int, max_pending: int = 64
) -> Iterator[ScoredFrame]:
    """Score the cubes of a frame stream in model batches that span frames: frames wait until
    `batch_size` cubes or `max_pending` frames are pending. Yields every frame, in order."""
    pending: list[StreamFrame] = []
    num_cubes = 0
    for item in stream:
        pending.append(item)
        num_cubes += len(item.boxes)
        if num_cubes >= batch_size or len(pending) >= max_pending:
            yield from _score_pending(model, pending, device, batch_size)
            pending, num_cubes = [], 0
    yield from _score_pending(model, pending, device, batch_size)


def _score_pending(model, pending: list[StreamFrame], device, batch_size: int):
    if not pending:
        return
    frame_cubes = np.concatenate([p.frame_cubes for p in pending])
    flow_cubes = np.concatenate([p.flow_cubes for p in pending])
    s_r, s_p = cube_errors(model, frame_cubes, flow_cubes, device, batch_size)
    bounds = np.cumsum([len(p.boxes) for p in pending])[:-1]
    for p, r, q in zip(pending, np.split(s_r, bounds), np.split(s_p, bounds)):
        yield ScoredFrame(p.index, p.frame, p.boxes, r, q)


class LiveSmoother:
    """Smoothed frame scores as soon as they are final, equal to `utils.scoring.smooth` over the
    whole video: a frame's smoothed value depends on the scores within `radius` frames (clipped
    at the ends of the scored stretch), so it is final `radius` frames later (or at the end).

    push(index, raw, payload) and finish() return [(index, smoothed, payload)] in frame order;
    frames with a NaN raw score (not scored) come out at once with NaN.
    """

    def __init__(self, mode: str, window: int, sigma: float):
        self.mode, self.window, self.sigma = mode, window, sigma
        smooth(np.zeros(1), mode, window, sigma)  # validates the settings
        # scipy.ndimage.gaussian_filter1d's kernel radius with its default truncate=4
        self.radius = {"median": window // 2, "gaussian": int(4.0 * sigma + 0.5)}.get(mode, 0)
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


# ---------------------------------------------------------------------------------------------
# One input


def open_input(path: str | Path) -> Video:
    """A video file or a folder of numbered frames; bad input is a DetectError naming it."""
    path = Path(path)
    if not path.exists():
        raise DetectError(f"input not found: {path}")
    if path.is_file():
        if path.suffix.lower() not in VIDEO_EXTS:
            raise DetectError(
                f"unsupported input {path}: give a video file ({', '.join(VIDEO_EXTS)}) or a "
                f"folder of numbered frames"
            )
        if path.stat().st_size == 0:
            raise DetectError(f"input video file is empty (0 bytes): {path}")
    try:
        return open_video(path)
    except (ValueError, FileNotFoundError) as err:
        raise DetectError(f"cannot read input {path}: {err}") from None


def video_fps(video: Video, fps: float | None) -> float:
    """`fps` if given, else the file's frame rate, else DEFAULT_FOLDER_FPS."""
    if fps is not None:
        return float(fps)
    if video.is_file:
        capture = cv2.VideoCapture(str(video.source))
        rate = capture.get(cv2.CAP_PROP_FPS)
        capture.release()
        if rate and np.isfinite(rate) and 0 < rate < 1000:
            return float(rate)
    return DEFAULT_FOLDER_FPS


def limit_frames(video: Video, max_frames: int) -> Video:
    """The first `max_frames` frames of `video` (0 = all)."""
    if not max_frames or max_frames >= video.num_frames:
        return video
    if max_frames < 5:
        raise DetectError(f"--max-frames must be 0 (all) or at least 5, got {max_frames}")
    return Video(
        video.name, video.source, video.frame_paths, video.start, max_frames, video.frame_size
    )


def detect_video(
    det: Detector,
    video: Video,
    out_dir: Path,
    threshold: Threshold | None = None,
    fps: float = DEFAULT_FOLDER_FPS,
    save_intermediate: bool = False,
    progress: bool = True,
) -> dict:
    """Score one video and write out_dir/{scores.csv, scores.json, objects.csv, curve.png,
    annotated.mp4} (and intermediate/ when asked). Returns the scores.json content."""
    cfg = det.cfg
    out_dir.mkdir(parents=True, exist_ok=True)
    cube_cfg, flow_cfg = cfg.preprocess.cubes, cfg.preprocess.flow
    stream = stream_cubes(
        video.frames(),
        det.boxes,
        det.flow,
        flow_cfg.first_frame,
        flow_cfg.dtype,
        cube_cfg.size,
        cube_cfg.num_frames,
    )
    intermediate = None
    if save_intermediate:
        intermediate = IntermediateWriter(
            out_dir / "intermediate",
            video.name,
            video.num_frames,
            video.frame_size,
            cube_cfg.size,
            cube_cfg.num_frames,
            flow_cfg.dtype,
            {"preprocess": cfg.preprocess.to_dict(), "source": str(video.source)},
        )
        stream = _tapped(stream, intermediate.add)
    frame_bytes = video.frame_size[0] * video.frame_size[1] * 3
    max_pending = int(np.clip(FRAME_BUFFER_BYTES // frame_bytes, 4, cfg.eval.batch_size))
    scored = score_stream(det.model, stream, det.device, cfg.eval.batch_size, max_pending)
    live = LiveSmoother(cfg.eval.smoothing, cfg.eval.window, cfg.eval.sigma)
    thr = threshold.value if threshold is not None else None
    w_r, w_p = det.weights
    colour_scale = thr if thr is not None and thr > 0 else 3.0 * (abs(w_r) + abs(w_p))
    raw_scores, num_objects, live_smoothed = [], [], []
    tic = time.time()
    try:
        with (
            streamed_file(out_dir / "annotated.mp4", suffix=".mp4") as video_path,
            streamed_file(out_dir / "objects.csv") as objects_path,
            VideoAnnotator(video_path, fps, video.frame_size, colour_scale) as ann,
            ObjectsCsv(objects_path) as objects,
            tqdm(
                total=video.num_frames, desc=video.name, unit="frame", disable=not progress
            ) as bar,
        ):

            def show(ready):
                for index, smoothed, (frame, boxes, scores, raw) in ready:
                    ann.write(frame, index, boxes, scores, raw, smoothed, thr)
                    live_smoothed.append(smoothed)

            for item in scored:
                scores = det.fuse(item.s_r, item.s_p)
                raw = float(scores.max()) if len(scores) else det.empty_score
                raw = float("nan") if item.index < cfg.eval.drop_first else raw
                raw_scores.append(raw)
                num_objects.append(len(scores))
                objects.write(item.index, item.boxes, item.s_r, item.s_p, scores)
                show(live.push(item.index, raw, (item.frame, item.boxes, scores, raw)))
                bar.update(1)
            show(live.finish())
        if intermediate is not None:
            intermediate.close()
    except BaseException:
        if intermediate is not None:
            intermediate.abort()
        raise
    seconds = time.time() - tic
    raw = np.asarray(raw_scores, dtype=np.float64)
    smoothed = smooth(raw, cfg.eval.smoothing, cfg.eval.window, cfg.eval.sigma)
    return _write_results(
        det,
        video,
        out_dir,
        fps,
        raw,
        smoothed,
        np.asarray(live_smoothed),
        num_objects,
        threshold,
        seconds,
    )


def _tapped(stream: Iterable[StreamFrame], store) -> Iterator[StreamFrame]:
    for item in stream:
        store(item)
        yield item


def _nulls(values: np.ndarray) -> list:
    return [float(v) if np.isfinite(v) else None for v in values]


def _write_results(
    det, video, out_dir, fps, raw, smoothed, live_smoothed, num_objects, threshold, seconds
) -> dict:
    cfg = det.cfg
    if not np.allclose(live_smoothed, smoothed, rtol=1e-9, atol=1e-9, equal_nan=True):
        raise RuntimeError("live smoothing differs from utils.scoring.smooth (a bug)")
    intervals, anomalous = [], None
    if threshold is not None:
        intervals = anomalous_intervals(smoothed, threshold.value, fps)
        anomalous = np.nan_to_num(smoothed, nan=-np.inf) > threshold.value
    w_r, w_p = det.weights
    doc = {
        "format": FORMAT,
        "input": str(video.source),
        "name": video.name,
        "num_frames": len(raw),
        "fps": fps,
        "frame_size": list(video.frame_size),
        "run_dir": str(cfg.run_dir),
        "checkpoint": dict(checkpoint_identity(det.ckpt), path=str(det.ckpt_path)),
        "scoring": {
            "model_type": cfg.model.type,
            "w_r": w_r,
            "w_p": w_p,
            "drop_first": cfg.eval.drop_first,
            "smoothing": {k: cfg.eval[k] for k in ("smoothing", "window", "sigma")},
            "empty_frame_score": det.empty_score,
        },
        "train_stats": {k: det.stats[k] for k in ("mean_r", "std_r", "mean_p", "std_p")},
        "threshold": threshold.to_dict() if threshold is not None else None,
        "intervals": intervals,
        "num_objects": int(sum(num_objects)),
        "seconds": round(seconds, 3),
        "frames_per_second": round(len(raw) / seconds, 2) if seconds > 0 else None,
        "frames": {
            "raw_score": _nulls(raw),
            "smoothed_score": _nulls(smoothed),
            "num_objects": [int(n) for n in num_objects],
        },
    }
    write_json(out_dir / "scores.json", doc)
    write_frame_csv(out_dir / "scores.csv", fps, raw, smoothed, num_objects, anomalous)
    plot_score_curve(
        out_dir / "curve.png",
        video.name,
        fps,
        raw,
        smoothed,
        threshold.value if threshold is not None else None,
        intervals,
    )
    return doc


# ---------------------------------------------------------------------------------------------
# Several inputs


def output_names(videos: list[Video]) -> list[str]:
    """One folder name per input: the video's name, with _2, _3 ... for repeats."""
    names, seen = [], {}
    for video in videos:
        count = seen.get(video.name, 0) + 1
        seen[video.name] = count
        names.append(video.name if count == 1 else f"{video.name}_{count}")
    return names


def detect(
    run_dir: str | Path,
    inputs: list[str | Path],
    out_dir: str | Path | None = None,
    threshold: float | None = None,
    far: float | None = None,
    device: str | None = None,
    overrides: Iterable[str] = (),
    fps: float | None = None,
    max_frames: int = 0,
    save_intermediate: bool = False,
    progress: bool = True,
) -> list[dict]:
    """Score every input (checked before any work starts) and write one folder per input under
    `out_dir` (default: <run_dir>/detect). Returns the scores.json documents."""
    if threshold is not None and far is not None:
        raise DetectError("give --threshold or --far, not both")
    if fps is not None and not fps > 0:
        raise DetectError(f"--fps must be positive, got {fps}")
    videos = [limit_frames(open_input(p), max_frames) for p in inputs]
    det = load_detector(run_dir, overrides, device)
    chosen = None
    if threshold is not None:
        chosen = absolute_threshold(threshold)
    elif far is not None:
        chosen = far_threshold(det, far)
    out_dir = Path(out_dir) if out_dir is not None else Path(run_dir) / "detect"
    log = get_logger()
    docs = []
    for video, name in zip(videos, output_names(videos)):
        doc = detect_video(
            det, video, out_dir / name, chosen, video_fps(video, fps), save_intermediate, progress
        )
        log.info(summary_line(doc, out_dir / name))
        docs.append(doc)
    frames = sum(d["num_frames"] for d in docs)
    seconds = sum(d["seconds"] for d in docs)
    log.info(
        f"{len(docs)} input(s), {frames} frames in {seconds:.1f} s: "
        f"{frames / max(seconds, 1e-9):.1f} frames/s on {det.device}"
    )
    return docs


def summary_line(doc: dict, folder: Path) -> str:
    """One line per input: frames, speed, peak score and the anomalous intervals."""
    smoothed = [s for s in doc["frames"]["smoothed_score"] if s is not None]
    peak = f"{max(smoothed):.3g}" if smoothed else "n/a"
    line = (
        f"{doc['name']}: {doc['num_frames']} frames, {doc['num_objects']} objects, "
        f"{doc['frames_per_second']} frames/s, peak smoothed score {peak} -> {folder}"
    )
    if doc["threshold"] is not None:
        spans = ", ".join(
            f"{i['start_s']:.1f}-{i['end_s']:.1f}s (frames {i['start_frame']}-{i['end_frame']}, "
            f"peak {i['peak_score']:.3g} at {i['peak_frame']})"
            for i in doc["intervals"]
        )
        line += f"; threshold {doc['threshold']['value']:.4g} ({doc['threshold']['method']}): "
        line += f"{len(doc['intervals'])} anomalous interval(s)" + (f": {spans}" if spans else "")
    return line
