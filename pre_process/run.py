"""Run pre-processing: boxes, flows and cubes for the configured splits, with caching.

    python -m pre_process.run --cfg cfgs/ped2.yaml [--splits training testing] [key=value ...]

Cache layout under `data.cache_dir`:
- `boxes/<split>/<video>.json`   per-frame boxes of one video, with the fingerprint they were
                                 made from;
- `flows/<split>/<video>.npy`    flows [T, H, W, 2] (`preprocess.flow.dtype`), with a sidecar
                                 `<video>.json` holding their fingerprint;
- `cubes/<split>/`               the cube arrays and `manifest.json` (see pre_process/cubes.py);
- `config.yaml`                  the resolved config of the last run;
- `preprocess_summary.json`      frames, boxes, cubes and seconds per step and split.
A fingerprint holds the step's settings and its inputs (frame count, size, and the byte count and
SHA-256 of the files read, not their paths or times, so a copied or moved dataset keeps its caches;
for cubes, the fingerprints of the boxes and flows). A step whose fingerprint is unchanged is
skipped, so an interrupted run resumes where it stopped (every file is written atomically).
"""

from __future__ import annotations

import argparse
import shutil
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from datasets import synthetic
from datasets.cubes import cube_folder
from datasets.frames import Video, list_videos, split_dir
from pre_process.boxes import RECIPE_VERSION as BOX_RECIPE_VERSION
from pre_process.boxes import BoxExtractor
from pre_process.cubes import CUBE_ARRAYS, CubeWriter, write_split_cubes
from pre_process.flow import build_flow_estimator, load_flows, write_video_flows
from pre_process.stream import stream_cubes
from utils.cli import run_cli
from utils.config import Config, add_config_args, load_config, save_config
from utils.fingerprint import digest, hashed_settings
from utils.io import atomic_folder, npy_complete, read_json, write_json
from utils.misc import get_logger, progress_bar, resolve_device

log = get_logger()


def _settings(section) -> dict:
    return section.to_dict() if isinstance(section, Config) else dict(section)


def _cube_settings(section) -> dict:
    """The cube settings that name a cube folder (settings added later omitted at their old
    value, so that existing caches stay valid)."""
    return hashed_settings(section, "preprocess.cubes")


@dataclass(frozen=True)
class PreprocessPlan:
    """What pre-processing reads from the config, read once (`from_config`): where the cache
    is, the data section (videos and frames), the box, flow and cube settings (sections that
    their builders take), the worker count, whether flows are stored, and the settings the cube
    manifests record."""

    cache_dir: Path
    data: Config
    boxes: Config
    flow: Config
    cubes: Config
    num_workers: int
    store_flows: bool
    recorded: dict  # {"data": ..., "preprocess": ...} as plain dicts

    @classmethod
    def from_config(cls, cfg) -> PreprocessPlan:
        pre = cfg.preprocess
        recorded = {"data": _settings(cfg.data), "preprocess": _settings(pre)}
        return cls(
            Path(cfg.data.cache_dir),
            cfg.data,
            pre.boxes,
            pre.flow,
            pre.cubes,
            int(pre.num_workers),
            bool(pre.store_flows),
            recorded,
        )

    def cube_dir(self, split: str) -> Path:
        return cube_folder(self.cache_dir, split)


def ensure_dataset(data: Config, spec: Config) -> None:
    """Generate the synthetic dataset (`spec`: the synthetic section) when the data section asks
    for it (data.synthetic) and it is absent or stale."""
    folder = Path(data.root) / data.dataset
    if not data.synthetic or synthetic.is_current(folder, spec):
        return
    log.info(f"generating the synthetic dataset in {folder}")
    info = synthetic.generate(folder, spec)
    log.info(
        f"synthetic data: {info['train_frames']} training and {info['test_frames']} test "
        f"frames ({info['abnormal_test_frames']} abnormal)"
    )


# ---------------------------------------------------------------------------------------------
# Boxes


def _read_boxes(path: Path, fingerprint: dict) -> list[np.ndarray] | None:
    """The cached boxes of a video, or None when missing or made from other settings/inputs."""
    if not path.is_file():
        return None
    stored = read_json(path)
    if stored.get("fingerprint") != fingerprint:
        return None
    return [np.asarray(b, dtype=np.float32).reshape(-1, 4) for b in stored["boxes"]]


def _box_video(
    video: Video, box_cfg, device, path: Path, fingerprint: dict, extractor=None, progress=None
) -> list[np.ndarray]:
    extractor = extractor or BoxExtractor(box_cfg, device)
    boxes = []
    for frame_boxes in extractor.video_boxes(video.frames()):
        boxes.append(frame_boxes)
        if progress is not None:
            progress(1)
    write_json(
        path,
        {
            "video": video.name,
            "num_frames": video.num_frames,
            "frame_size": list(video.frame_size),
            "fingerprint": fingerprint,
            "boxes": [np.round(b, 2).tolist() for b in boxes],
        },
    )
    return boxes


def step_boxes(
    plan: PreprocessPlan, split: str, videos: list[Video], fingerprints: list, device
) -> tuple:
    """Boxes of every video (cached per video). Returns (boxes per video, videos computed)."""
    folder = plan.cache_dir / "boxes" / split
    paths = [folder / f"{v.name}.json" for v in videos]
    result = [_read_boxes(p, f) for p, f in zip(paths, fingerprints)]
    todo = [k for k, r in enumerate(result) if r is None]
    if todo:
        args = [(videos[k], plan.boxes, str(device), paths[k], fingerprints[k]) for k in todo]
        for k, boxes in zip(
            todo,
            _run_jobs(
                _box_video,
                args,
                plan.num_workers,
                f"{split} boxes",
                BoxExtractor,
                (plan.boxes, device),
            ),
        ):
            result[k] = boxes
    return result, len(todo)


# ---------------------------------------------------------------------------------------------
# Flows


def _flow_current(path: Path, fingerprint: dict) -> bool:
    sidecar = path.with_suffix(".json")
    current = path.is_file() and sidecar.is_file() and read_json(sidecar) == fingerprint
    return current and npy_complete(path)


def _flow_video(
    video: Video, flow_cfg, device, path: Path, fingerprint: dict, estimator=None, progress=None
) -> None:
    estimator = estimator or build_flow_estimator(flow_cfg, device)
    write_video_flows(
        video.frames(),
        video.num_frames,
        estimator,
        path,
        flow_cfg.first_frame,
        flow_cfg.dtype,
        progress,
    )
    write_json(path.with_suffix(".json"), fingerprint)


def step_flows(
    plan: PreprocessPlan, split: str, videos: list[Video], fingerprints: list, device
) -> tuple:
    """Flows of every video (cached per video). Returns (paths, videos computed)."""
    folder = plan.cache_dir / "flows" / split
    paths = [folder / f"{v.name}.npy" for v in videos]
    todo = [k for k in range(len(videos)) if not _flow_current(paths[k], fingerprints[k])]
    if todo:
        args = [(videos[k], plan.flow, str(device), paths[k], fingerprints[k]) for k in todo]
        list(
            _run_jobs(
                _flow_video,
                args,
                plan.num_workers,
                f"{split} flows",
                build_flow_estimator,
                (plan.flow, device),
            )
        )
    return paths, len(todo)


def _run_jobs(job, args: list[tuple], workers: int, desc: str, make_tool, tool_args):
    """Run `job(*a)` for every a in `args`: here with one shared tool (detector / flow model)
    and a per-frame progress bar, or in `workers` processes (per-video bar)."""
    total = sum(a[0].num_frames for a in args)
    if workers > 0 and len(args) > 1:
        with (
            ProcessPoolExecutor(workers) as pool,
            progress_bar(total=total, desc=desc, unit="frame") as bar,
        ):
            futures = [pool.submit(job, *a) for a in args]
            for a, future in zip(args, futures):
                yield future.result()
                bar.update(a[0].num_frames)
        return
    tool = make_tool(*tool_args)
    with progress_bar(total=total, desc=desc, unit="frame") as bar:
        for a in args:
            yield job(*a, tool, bar.update)


# ---------------------------------------------------------------------------------------------
# Cubes


def _cubes_fingerprint(cube_cfg, split, box_fps, flow_fps) -> str:
    return digest(
        {"cubes": _cube_settings(cube_cfg), "boxes": box_fps, "flows": flow_fps, "split": split}
    )


def _current_count(out_dir: Path, fingerprint: str) -> int | None:
    """The cube count of a complete cube folder made with `fingerprint`, else None."""
    manifest_path = out_dir / "manifest.json"
    if not manifest_path.is_file():
        return None
    manifest = read_json(manifest_path)
    complete = all(npy_complete(out_dir / f"{name}.npy") for name in CUBE_ARRAYS)
    if manifest.get("fingerprint") == fingerprint and complete:
        return int(manifest["count"])
    if not complete:
        log.warning(f"{out_dir}: a cube file is truncated or missing; making the cubes again")
    return None


def _manifest(recorded: dict, split, videos, boxes, fingerprint) -> dict:
    return {
        "split": split,
        "videos": [v.name for v in videos],
        "num_frames": [v.num_frames for v in videos],
        "frame_size": list(videos[0].frame_size),
        "sources": [{"video": v.name, "source": str(v.source), "start": v.start} for v in videos],
        "num_boxes": [int(sum(len(b) for b in vb)) for vb in boxes],
        "fingerprint": fingerprint,
        "config": recorded,
    }


def step_cubes(
    plan: PreprocessPlan, split, videos, boxes, flow_paths, box_fps, flow_fps
) -> tuple[int, bool]:
    """Cubes of a split. Returns (number of cubes, whether they were computed)."""
    out_dir = plan.cube_dir(split)
    cube_cfg = plan.cubes
    fingerprint = _cubes_fingerprint(cube_cfg, split, box_fps, flow_fps)
    count = _current_count(out_dir, fingerprint)
    if count is not None:
        return count, False
    manifest = _manifest(plan.recorded, split, videos, boxes, fingerprint)
    sizes = {tuple(v.frame_size) for v in videos}
    if len(sizes) > 1:  # allowed (boxes are per video) but worth knowing
        log.info(f"{split}: videos have different frame sizes {sorted(sizes)}")
    total = sum(v.num_frames for v in videos)
    with progress_bar(total=total, desc=f"{split} cubes", unit="frame") as bar:
        count = write_split_cubes(
            out_dir,
            videos,
            boxes,
            lambda k: load_flows(flow_paths[k], videos[k].num_frames, videos[k].frame_size),
            manifest,
            size=cube_cfg.size,
            num_frames=cube_cfg.num_frames,
            chunk_size=cube_cfg.chunk_size,
            progress=bar.update,
            border_aspect=float(cube_cfg.border_aspect),
        )
    return count, True


# ---------------------------------------------------------------------------------------------
# Cubes without stored flows (preprocess.store_flows: false)


class _KnownBoxes:
    """A stand-in for BoxExtractor that yields boxes already computed, one frame behind the
    frames it reads, as BoxExtractor does (the flow of frame 0 may need frame 1)."""

    def __init__(self, boxes: list[np.ndarray]):
        self.boxes = boxes

    def video_boxes(self, frames) -> Iterator[np.ndarray]:
        stream = iter(frames)
        if next(stream, None) is None:
            return
        for i, _ in enumerate(stream):
            yield self.boxes[i]
        yield self.boxes[len(self.boxes) - 1]


def _part_current(folder: Path, fingerprint: dict) -> bool:
    done = folder / "done.json"
    return done.is_file() and read_json(done) == fingerprint


def _stream_part(
    video: Video,
    boxes,
    flow_cfg,
    cube_cfg,
    device,
    folder: Path,
    fingerprint: dict,
    estimator=None,
    progress=None,
) -> None:
    """One video's cubes, its flows computed frame by frame and dropped once cropped; written
    to `folder` (frames, flows, boxes, frame_idx .npy) and marked done."""
    estimator = estimator or build_flow_estimator(flow_cfg, device)
    count = sum(len(b) for b in boxes)
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny crops; see write_split_cubes
    try:
        writer = CubeWriter(folder, count, cube_cfg.size, cube_cfg.num_frames, cube_cfg.chunk_size)
        stream = stream_cubes(
            video.frames(),
            _KnownBoxes(boxes),
            estimator,
            flow_cfg.first_frame,
            flow_cfg.dtype,
            cube_cfg.size,
            cube_cfg.num_frames,
            float(cube_cfg.border_aspect),
        )
        for item in stream:
            writer.add(0, item.index, item.frame_cubes, item.flow_cubes, item.boxes)
            if progress is not None:
                progress(1)
        writer.close()
    finally:
        torch.set_num_threads(threads)
    write_json(folder / "done.json", fingerprint)


def step_streamed_cubes(
    plan: PreprocessPlan, split, videos, boxes, box_fps, flow_fps, device
) -> tuple[int, bool]:
    """Cubes of a split with flows computed on the fly and never written: one part per video
    (resumable; videos in `preprocess.num_workers` processes), then joined in video order, so
    the cubes equal those made with stored flows. Returns (number of cubes, computed)."""
    out_dir = plan.cube_dir(split)
    fingerprint = _cubes_fingerprint(plan.cubes, split, box_fps, flow_fps)
    count = _current_count(out_dir, fingerprint)
    if count is not None:
        return count, False
    parts_dir = plan.cache_dir / "cube_parts" / split
    parts = [parts_dir / v.name for v in videos]
    part_fps = [
        {"boxes": b, "flows": f, "cubes": _cube_settings(plan.cubes)}
        for b, f in zip(box_fps, flow_fps)
    ]
    todo = [k for k in range(len(videos)) if not _part_current(parts[k], part_fps[k])]
    args = [
        (
            videos[k],
            boxes[k],
            plan.flow,
            plan.cubes,
            str(device),
            parts[k],
            part_fps[k],
        )
        for k in todo
    ]
    if args:
        list(
            _run_jobs(
                _stream_part,
                args,
                plan.num_workers,
                f"{split} cubes (flows not stored)",
                build_flow_estimator,
                (plan.flow, device),
            )
        )
    manifest = _manifest(plan.recorded, split, videos, boxes, fingerprint)
    count = _join_parts(out_dir, parts, manifest, plan.cubes)
    shutil.rmtree(parts_dir)
    if not any(parts_dir.parent.iterdir()):
        parts_dir.parent.rmdir()
    return count, True


def _join_parts(out_dir: Path, parts: list[Path], manifest: dict, cube_cfg) -> int:
    """The split's cube folder from the per-video parts, in video order (atomically)."""
    arrays = [{n: np.load(p / f"{n}.npy", mmap_mode="r") for n in CUBE_ARRAYS} for p in parts]
    count = sum(len(a["boxes"]) for a in arrays)
    with atomic_folder(out_dir) as tmp:
        writer = CubeWriter(tmp, count, cube_cfg.size, cube_cfg.num_frames, cube_cfg.chunk_size)
        for v, part in enumerate(arrays):
            for start in range(0, len(part["boxes"]), cube_cfg.chunk_size):
                end = start + cube_cfg.chunk_size
                writer.add_block(
                    v,
                    part["frame_idx"][start:end],
                    part["frames"][start:end],
                    part["flows"][start:end],
                    part["boxes"][start:end],
                )
        writer.close()
        write_json(tmp / "manifest.json", {**manifest, "count": count})
    return count


# ---------------------------------------------------------------------------------------------


def preprocess_split(plan: PreprocessPlan, split: str, device) -> dict:
    """Boxes, flows and cubes of one split; returns its summary."""
    videos = list_videos(plan.data, split)
    num_frames = sum(v.num_frames for v in videos)
    inputs = [v.signature() for v in videos]
    box_settings = dict(hashed_settings(plan.boxes, "preprocess.boxes"), recipe=BOX_RECIPE_VERSION)
    box_fps = [{"settings": box_settings, "input": i} for i in inputs]
    flow_settings = hashed_settings(plan.flow, "preprocess.flow")
    flow_fps = [{"settings": flow_settings, "input": i} for i in inputs]
    seconds = {}
    tic = time.time()
    boxes, boxes_done = step_boxes(plan, split, videos, box_fps, device)
    seconds["boxes"] = time.time() - tic
    tic = time.time()
    if plan.store_flows:
        flow_paths, flows_done = step_flows(plan, split, videos, flow_fps, device)
        seconds["flows"] = time.time() - tic
        tic = time.time()
        count, cubes_done = step_cubes(plan, split, videos, boxes, flow_paths, box_fps, flow_fps)
    else:  # flows computed while the cubes are cut, never written
        seconds["flows"] = 0.0
        count, cubes_done = step_streamed_cubes(
            plan, split, videos, boxes, box_fps, flow_fps, device
        )
        flows_done = cubes_done
    seconds["cubes"] = time.time() - tic
    num_boxes = sum(len(b) for vb in boxes for b in vb)
    return {
        "videos": len(videos),
        "frames": num_frames,
        "boxes": num_boxes,
        "boxes_per_frame": round(num_boxes / max(num_frames, 1), 3),
        "cubes": count,
        "computed": {"boxes": boxes_done, "flows": flows_done, "cubes": cubes_done},
        "seconds": {k: round(v, 2) for k, v in seconds.items()},
    }


def format_summary(summary: dict) -> str:
    lines = [
        f"pre-processing summary ({summary['dataset']}, cache {summary['cache_dir']})",
        f"{'split':<10}{'videos':>7}{'frames':>8}{'boxes':>8}{'box/fr':>8}{'cubes':>8}"
        f"{'boxes s':>9}{'flows s':>9}{'cubes s':>9}",
    ]
    for split, s in summary["splits"].items():
        sec = s["seconds"]
        lines.append(
            f"{split:<10}{s['videos']:>7}{s['frames']:>8}{s['boxes']:>8}"
            f"{s['boxes_per_frame']:>8.2f}{s['cubes']:>8}{sec['boxes']:>9.1f}"
            f"{sec['flows']:>9.1f}{sec['cubes']:>9.1f}"
        )
    lines.append(_total_line(summary))
    return "\n".join(lines)


def _total_line(summary: dict) -> str:
    computed = any(any(s["computed"].values()) for s in summary["splits"].values())
    if not computed:
        return f"every step was cached and up to date ({summary['seconds']:.1f} s)"
    return (
        f"total {summary['seconds']:.1f} s, {summary['frames_per_second']:.1f} frames/s "
        "(steps skipped when cached: see 'computed' in preprocess_summary.json)"
    )


def run_preprocess(cfg, splits=None) -> dict:
    """Boxes, flows and cubes for `splits` (default: data.train_split and data.test_split),
    skipping what is cached and up to date. Prints and saves a summary; returns it."""
    splits = tuple(splits or (cfg.data.train_split, cfg.data.test_split))
    tic = time.time()
    ensure_dataset(cfg.data, cfg.synthetic)
    for split in splits:  # before anything is written: missing data leaves no cache behind
        folder = split_dir(cfg.data, split)
        if not folder.is_dir():
            raise FileNotFoundError(
                f"no {split} data at {folder}: put the dataset under data.root "
                f"({cfg.data.root}), or point data.root (or $HF2VAD_DATASETS) at its folder"
            )
    cache = Path(cfg.data.cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    save_config(cfg, cache / "config.yaml")
    device = resolve_device(cfg.device)
    plan = PreprocessPlan.from_config(cfg)
    summary = {"dataset": cfg.data.dataset, "cache_dir": str(cache), "splits": {}}
    for split in splits:
        summary["splits"][split] = preprocess_split(plan, split, device)
    summary["seconds"] = round(time.time() - tic, 2)
    frames = sum(s["frames"] for s in summary["splits"].values())
    summary["frames_per_second"] = round(frames / max(summary["seconds"], 1e-9), 2)
    write_json(cache / "preprocess_summary.json", summary)
    log.info(format_summary(summary))
    return summary


def parse_args(argv=None) -> tuple[Config, list[str] | None]:
    """(config, splits) from the command line; `--splits a b key=value` works although
    nargs="+" also takes the overrides, and an unknown split is an error naming it."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_config_args(parser)
    parser.add_argument(
        "--splits",
        nargs="+",
        default=None,
        help="splits to process (default: data.train_split data.test_split)",
    )
    args = parser.parse_args(argv)
    splits, overrides = args.splits, list(args.overrides)
    if splits is not None:
        overrides += [s for s in splits if "=" in s]
        splits = [s for s in splits if "=" not in s]
    cfg = load_config(args.cfg, overrides)
    known = {cfg.data.train_split, cfg.data.test_split}
    unknown = sorted(set(splits or ()) - known)
    if unknown:
        raise ValueError(f"unknown split(s) {unknown}: this config has {sorted(known)}")
    return cfg, splits


def main(argv=None) -> dict:
    cfg, splits = parse_args(argv)
    return run_preprocess(cfg, splits)


if __name__ == "__main__":
    run_cli(main, "pre_process.run")
