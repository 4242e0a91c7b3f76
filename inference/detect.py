"""Score any video with a trained run: streaming boxes -> flow -> cubes -> model -> scores.

    python detect.py --run runs/ped2 --input my_video.mp4 frames_folder/ [--far 0.01]

Everything the pre-processing and the model need comes from the run directory: its saved config
(the first of `config.yaml`, `eval/config.yaml`, `stage3/`, `stage2/`, `stage1/config.yaml`), the
checkpoint that eval.py would use (`eval.checkpoint`) and the training statistics saved beside it
(`<ckpt>.train_stats[.bfloat16].json`; computed from the training cubes when missing and the
cubes exist).

Scores follow eval.py exactly (docs/method.md §6): per object S_r and S_p, z-normalised with the
training statistics and fused with eval.w_r / eval.w_p; with eval.track_window > 1 each object's
fused score is smoothed along its track (scoring/tracks.py); a frame's raw score is the maximum over
its objects (a frame without objects gets the score of a zero-error object); the first
eval.drop_first frames are not scored; the rest is smoothed with eval.smoothing. The object scores
equal eval.py's for the same frames (tests/test_detect.py checks it); objects.csv holds them
before the track smoothing.

Memory does not grow with the video's length except for a few numbers per frame: the stream holds
6 frames and 5 flows (pre_process/stream.py), frames wait with their cubes until eval.batch_size
cubes are pending (at most eval.batch_size frames or 256 MB of frames), and the annotated video is
written with a delay of the smoothing radius (8 frames for a median of 17, plus half the track
window), which is when a frame's smoothed score is final, so the video shows the same smoothed
score as scores.csv.

Thresholds (optional): `--threshold X` on the smoothed score, or `--far F`: the smoothed score
that a fraction F of the *training* frames exceeds, with the same scoring protocol, from the
per-object training errors that eval.py cached beside the checkpoint
(<ckpt>.train_object_scores.npz; one pass over the training cubes when missing). The training
frames were seen in training, so expect more false alarms than F on new normal footage. Without
that file and the training cubes, `--far` falls back to a normal approximation per object:
threshold = z(1 - F) * (sum of |weights|), the quantile of a fused score whose z-scored terms
are standard normal and fully correlated; this ignores the maximum over objects and the
smoothing, so it is a rough guide only (the output says which was used).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import cv2
import numpy as np

from datasets.frames import VIDEO_EXTS, Video, open_video
from engine.checkpoint import checkpoint_identity
from inference.outputs import (
    IntermediateWriter,
    ObjectsCsv,
    VideoAnnotator,
    plot_score_curve,
    streamed_file,
    write_frame_csv,
)
from inference.stream_scoring import LiveSmoother, score_stream
from inference.thresholds import Threshold, absolute_threshold, anomalous_intervals, far_threshold
from inference.trained_run import DetectError, TrainedRun, load_trained_run
from models import model_type
from pre_process.stream import StreamFrame
from scoring.frame_scores import FrameProtocol, smooth
from scoring.statistics import SAVED_STAT_KEYS
from scoring.tracks import LiveTracks
from utils.io import finite_or_none, read_json, write_json
from utils.misc import get_logger, progress_bar
from utils.threads import prefetched

FORMAT = "hf2vad-detect-1"
DEFAULT_FOLDER_FPS = 25.0  # frames per second assumed for folders of images (--fps to change)
FRAME_BUFFER_BYTES = 256 * 2**20  # frames held while their cubes wait for a model batch


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


# Peak memory of the streaming pipeline per frame pixel, measured on 4000x3000 frames (3.5 GB).
BYTES_PER_PIXEL = 300


def training_frame_size(det: TrainedRun) -> tuple[int, int] | None:
    """(height, width) of the run's training frames, when its training cubes are at hand."""
    manifest = det.cubes.folder(det.cubes.train_split) / "manifest.json"
    if not manifest.is_file():
        return None
    size = read_json(manifest).get("frame_size")
    return tuple(size) if size else None


def warn_frame_size(video: Video, trained: tuple[int, int] | None, factor: float = 4.0) -> None:
    """A warning when the video's frames have far more or fewer pixels than the training
    frames: boxes, flows and cubes are made at the video's own size, so objects look different
    to the model, and large frames cost memory and time."""
    if trained is None:
        return
    pixels = video.frame_size[0] * video.frame_size[1]
    ratio = pixels / (trained[0] * trained[1])
    if 1 / factor <= ratio <= factor:
        return
    get_logger().warning(
        f"{video.source}: frames of {video.frame_size[0]}x{video.frame_size[1]} are {ratio:.2g}x "
        f"the pixels of the training frames ({trained[0]}x{trained[1]}); objects will look "
        f"different to the model (resize the input to about the training size), and scoring "
        f"needs about {pixels * BYTES_PER_PIXEL / 2**30:.1f} GiB of memory"
    )


def detect_video(
    det: TrainedRun,
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
    warn_frame_size(video, training_frame_size(det))
    cube_cfg, flow_cfg = cfg.preprocess.cubes, cfg.preprocess.flow
    frame_bytes = video.frame_size[0] * video.frame_size[1] * 3
    max_pending = int(np.clip(FRAME_BUFFER_BYTES // frame_bytes, 4, cfg.eval.batch_size))
    stream = det.stream(video.frames())
    if cfg.eval.prefetch_frames > 0:  # pre-processing on a thread, beside the model
        # the frames waiting on the thread come out of the same memory budget
        depth = min(cfg.eval.prefetch_frames, max_pending // 2)
        max_pending -= depth
        stream = prefetched(stream, depth)
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
        stream = _tapped(stream, intermediate.add)  # on this thread, after the prefetch
    novelty = det.appearance_novelty if det.appearance is not None else None
    scored = score_stream(det.model, stream, det.device, cfg.eval.batch_size, max_pending, novelty)
    tracks = LiveTracks(FrameProtocol.from_config(cfg).tracks)
    live = LiveSmoother(cfg.eval.smoothing, cfg.eval.window, cfg.eval.sigma)
    thr = threshold.value if threshold is not None else None
    colour_scale = thr if thr is not None and thr > 0 else 3.0 * sum(map(abs, det.weights))
    raw_scores, num_objects, live_smoothed = [], [], []
    tic = time.time()
    try:
        with (
            streamed_file(out_dir / "annotated.mp4", suffix=".mp4") as video_path,
            streamed_file(out_dir / "objects.csv") as objects_path,
            VideoAnnotator(video_path, fps, video.frame_size, colour_scale) as ann,
            ObjectsCsv(
                objects_path,
                appearance=det.appearance is not None,
                divergence=model_type(cfg.model.type).predictor is not None,
            ) as objects,
            progress_bar(
                total=video.num_frames, desc=video.name, unit="frame", disable=not progress
            ) as bar,
        ):

            def show(ready):
                for index, smoothed, (frame, boxes, scores, raw) in ready:
                    ann.write(frame, index, boxes, scores, raw, smoothed, thr)
                    live_smoothed.append(smoothed)

            def tracked(ready):  # object scores final along their tracks -> frame scores
                for index, scores, (frame, boxes) in ready:
                    raw = float(scores.max()) if len(scores) else det.empty_score
                    raw = float("nan") if index < cfg.eval.drop_first else raw
                    raw_scores.append(raw)
                    show(live.push(index, raw, (frame, boxes, scores, raw)))

            for item in scored:
                errors = (item.s_r, item.s_p, item.s_kl)
                if not all(np.isfinite(e).all() for e in errors):
                    raise DetectError(
                        f"{video.source}: non-finite object error at frame {item.index} "
                        f"(S_r {list(item.s_r)}, S_p {list(item.s_p)}, S_kl {list(item.s_kl)})"
                    )
                scores = det.fuse(
                    item.s_r, item.s_p, item.boxes, video.frame_size, item.s_a, item.s_kl
                )
                num_objects.append(len(scores))
                objects.write(item, scores)
                tracked(tracks.push(item.index, item.boxes, scores, (item.frame, item.boxes)))
                bar.update(1)
            tracked(tracks.finish())
            show(live.finish())
        if intermediate is not None:
            intermediate.close()
    except BaseException:
        scored.close()  # stops the pre-processing thread before its outputs are removed
        stream.close()
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


def _write_results(
    det, video, out_dir, fps, raw, smoothed, live_smoothed, num_objects, threshold, seconds
) -> dict:
    cfg = det.cfg
    if not np.allclose(live_smoothed, smoothed, rtol=1e-9, atol=1e-9, equal_nan=True):
        raise RuntimeError("live smoothing differs from scoring.frame_scores.smooth (a bug)")
    intervals, anomalous = [], None
    if threshold is not None:
        intervals = anomalous_intervals(smoothed, threshold.value, fps)
        anomalous = np.nan_to_num(smoothed, nan=-np.inf) > threshold.value
    w_r, w_p, w_a, w_kl = det.weights
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
            **({"w_a": w_a} if w_a else {}),
            **({"w_kl": w_kl} if w_kl else {}),
            "drop_first": cfg.eval.drop_first,
            "smoothing": {k: cfg.eval[k] for k in ("smoothing", "window", "sigma")},
            "tracks": {"window": cfg.eval.track_window, "min_iou": cfg.eval.track_iou},
            "empty_frame_score": det.empty_score,
        },
        "train_stats": {k: det.stats[k] for k in SAVED_STAT_KEYS if k in det.stats},
        "threshold": threshold.to_dict() if threshold is not None else None,
        "intervals": intervals,
        "num_objects": int(sum(num_objects)),
        "seconds": round(seconds, 3),
        "frames_per_second": round(len(raw) / seconds, 2) if seconds > 0 else None,
        "frames": {
            "raw_score": finite_or_none(raw),
            "smoothed_score": finite_or_none(smoothed),
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
    det = load_trained_run(run_dir, overrides, device)
    out_dir = Path(out_dir) if out_dir is not None else Path(run_dir) / "detect"
    return detect_with(det, videos, out_dir, threshold, far, fps, save_intermediate, progress)


def threshold_for(det: TrainedRun, threshold: float | None, far: float | None):
    """The Threshold of --threshold or --far (None without either)."""
    if threshold is not None and far is not None:
        raise DetectError("give --threshold or --far, not both")
    if threshold is not None:
        return absolute_threshold(threshold)
    if far is not None:
        return far_threshold(det, far)
    return None


def detect_with(
    det: TrainedRun,
    videos: list[Video],
    out_dir: Path,
    threshold: float | None = None,
    far: float | None = None,
    fps: float | None = None,
    save_intermediate: bool = False,
    progress: bool = True,
) -> list[dict]:
    """`detect` with a loaded run and opened videos: one output folder per video."""
    chosen = threshold_for(det, threshold, far)
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
